import gc
import math

from conftest import without_wall_time

from disco import SimConfig, simulate


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), k


def test_same_config_gives_identical_metrics():
    cfg = SimConfig.from_dict({"sim": {"duration_s": 15.0}})
    a, b = simulate(cfg), simulate(cfg)
    _same(without_wall_time(a.metrics), without_wall_time(b.metrics))
    assert a.timeline == b.timeline


def test_different_seed_gives_different_metrics():
    a = simulate(SimConfig.from_dict({"sim": {"duration_s": 15.0, "seed": 1}})).metrics
    b = simulate(SimConfig.from_dict({"sim": {"duration_s": 15.0, "seed": 2}})).metrics
    assert without_wall_time(a) != without_wall_time(b)


def test_default_config_is_the_paper_machine_and_finishes_its_mix():
    r = simulate()
    assert r.metrics["vms_completed"] == r.metrics["vms_total"] == 12
    assert r.metrics["events"] > 1000
    assert r.metrics["balancer_moves_idle"] > 0
    # across cells the periodic balancer moves whole VMs: the default mix's 8-VCPU VMs span
    # two cells and its 4-VCPU ones fill one, so no VCPU move within a cell pays
    assert r.metrics["balancer_vm_moves"] > 0 and r.metrics["balancer_splits"] == 0
    assert set(r.timeline["cell"]) == set(range(8))


def test_simulate_leaves_the_garbage_collector_as_it_found_it():
    """The run pauses the cyclic collector (runner.simulate) and must hand it back."""
    cfg = SimConfig.from_dict({"sim": {"duration_s": 1.0}})
    assert gc.isenabled()
    simulate(cfg)
    assert gc.isenabled()
    gc.disable()
    try:
        simulate(cfg)
        assert not gc.isenabled()
    finally:
        gc.enable()
