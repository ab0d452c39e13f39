"""Invariants over random machines, cell sizes, policies and workload mixes.

The invariant checker runs after every event: no CPU runs two VCPUs, no VCPU runs on two CPUs,
a VM's VCPUs sit on distinct CPUs, the gang constraint holds, incremental counters match a
recount and CPU time adds up to CPUs x time.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disco import SimConfig, simulate

WORKLOADS = ("raytrace", "pmake", "database", "webserver")


@st.composite
def configs(draw):
    nodes = draw(st.sampled_from([1, 2, 4, 8]))
    cpus_per_node = draw(st.sampled_from([1, 2, 4]))
    cells = draw(st.sampled_from([c for c in (1, 2, 4, 8) if nodes % c == 0]))
    cpus = nodes * cpus_per_node
    groups = draw(st.lists(st.fixed_dictionaries({
        "workload": st.sampled_from(WORKLOADS),
        "count": st.integers(1, 3),
        "vcpus": st.integers(1, cpus),
        "work_s": st.floats(0.05, 1.0),
        "arrival_s": st.floats(0.0, 1.0),
        "spacing_s": st.floats(0.0, 0.5),
    }), min_size=1, max_size=4))
    policy = {
        "gang": draw(st.booleans()),
        "idle_balancer": draw(st.booleans()),
        "periodic_balancer": draw(st.booleans()),
        "periodic_period_ms": draw(st.sampled_from([20.0, 100.0])),
        "allow_cell_split": draw(st.booleans()),
        "idle_rewake": draw(st.booleans()),
        "idle_steal_costed": draw(st.booleans()),
        "cpu_timer_phase": draw(st.booleans()),
        "slice_jitter": draw(st.sampled_from([0.0, 0.1, 1.0])),
        "vm_switch_rewarm": draw(st.sampled_from([0.0, 0.1])),
        "periodic_smoothing_ms": draw(st.sampled_from([0.0, 500.0])),
        "containment_price": draw(st.sampled_from([0.0, 0.5])),
        "periodic_swaps": draw(st.booleans()),
        "periodic_vm_moves": draw(st.booleans()),
    }
    return SimConfig.from_dict({
        "machine": {"nodes": nodes, "cpus_per_node": cpus_per_node},
        "cells": {"count": cells},
        "workload": {"vms": groups},
        "policy": policy,
        "faults": {"migration_mb_per_s": 400.0},  # whole-VM moves within the 2 s
        "sim": {"duration_s": 2.0, "check_invariants": True, "sample_interval_s": 0.5,
                "seed": draw(st.integers(0, 2**16))},
    })


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_invariants_hold_on_random_machines_and_mixes(cfg):
    m = simulate(cfg).metrics
    parts = (m["cpu_utilization"] + m["idle_fraction"] + m["spin_waste_fraction"]
             + m["overhead_fraction"])
    assert abs(parts - 1.0) < 1e-9
    assert 0 <= m["vms_completed"] <= m["vms_total"]
    if not cfg.policy.gang:
        return
    assert m["spin_waste_fraction"] == 0.0


# Eight 1- and 2-VCPU VMs crowded into cell 0 of two, small enough to copy in a tenth of a
# second, under node faults with restarts and repairs: the balancer moves and swaps VCPUs and
# whole VMs, splits VMs (containment free), and faults strike copies in flight.
CROWDED = [
    {"workload": "raytrace", "count": 3, "vcpus": 2, "work_s": 1.0, "home_cell": 0,
     "memory_mb": 16},
    {"workload": "pmake", "count": 3, "vcpus": 1, "work_s": 1.0, "home_cell": 0,
     "memory_mb": 16},
    {"workload": "webserver", "count": 2, "vcpus": 2, "work_s": 0.8, "home_cell": 0,
     "arrival_s": 0.3, "memory_mb": 16},
]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**16), st.booleans(), st.sampled_from([0.0, 0.5]), st.booleans(),
       st.booleans(), st.sampled_from(["early", "lazy"]))
def test_invariants_hold_with_whole_vm_moves_swaps_and_splits_under_faults(
        seed, gang, price, vm_moves, copy_dependency, kill_policy):
    cfg = SimConfig.from_dict({
        "machine": {"nodes": 4, "cpus_per_node": 2, "memory_per_node_mb": 128},
        "cells": {"count": 2},
        "workload": {"vms": CROWDED},
        "policy": {"gang": gang, "containment_price": price, "periodic_period_ms": 20.0,
                   "periodic_vm_moves": vm_moves},
        "sim": {"duration_s": 4.0, "check_invariants": True, "seed": seed},
        "faults": {"node_rate": 0.05, "restart_lost": True, "cell_repair_s": 0.3,
                   "migration_mb_per_s": 400.0, "migration_copy_dependency": copy_dependency,
                   "kill_policy": kill_policy, "data_follow_s": 0.2},
    })
    m = simulate(cfg).metrics
    parts = (m["cpu_utilization"] + m["idle_fraction"] + m["spin_waste_fraction"]
             + m["overhead_fraction"])
    assert abs(parts - 1.0) < 1e-9
    assert m["faults_contained"] <= m["faults_effective_hardware"]


def test_the_crowded_scenario_takes_every_new_move():
    """The scenario above does exercise what it is for (one fixed seed per variant)."""
    seen = {"balancer_vm_moves": 0, "balancer_swaps_periodic": 0, "balancer_splits": 0,
            "balancer_moves_periodic": 0, "idle_rewakes": 0}
    for gang, price, vm_moves in ((True, 0.0, True), (False, 0.5, True), (True, 0.0, False)):
        cfg = SimConfig.from_dict({
            "machine": {"nodes": 4, "cpus_per_node": 2, "memory_per_node_mb": 128},
            "cells": {"count": 2}, "workload": {"vms": CROWDED},
            "policy": {"gang": gang, "containment_price": price, "periodic_period_ms": 20.0,
                       "periodic_vm_moves": vm_moves},
            "sim": {"duration_s": 4.0, "seed": 1},
            "faults": {"migration_mb_per_s": 400.0},
        })
        m = simulate(cfg).metrics
        for k in seen:
            seen[k] += m[k]
    assert all(v > 0 for v in seen.values()), seen
