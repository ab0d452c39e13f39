"""Memory conservation over random small machines and mixes (disco/vmm/memory.py).

With ``sim.check_invariants`` the invariant checker runs after every event: per node, used +
free frames = the node's frames; every 64th event a full audit: every frame has one home node
and is in exactly one place (one free stack under its manager, or one owner's chunk), per-cell
free counts and borrowed reserves recount, and lent = borrowed for every (borrower, lender).
"""

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from memory_helpers import run

from disco import SimConfig
from disco.config import ConfigError

WORKLOADS = ("raytrace", "pmake", "database", "webserver")


@st.composite
def memory_configs(draw):
    nodes = draw(st.sampled_from([2, 4, 8]))
    cpus_per_node = draw(st.sampled_from([1, 2]))
    cells = draw(st.sampled_from([c for c in (1, 2, 4) if nodes % c == 0]))
    chunk = draw(st.sampled_from([2, 4, 8]))
    per_node = chunk * draw(st.integers(8, 32))
    cpus = nodes * cpus_per_node
    groups = draw(st.lists(st.fixed_dictionaries({
        "workload": st.sampled_from(WORKLOADS),
        "count": st.integers(1, 3),
        "vcpus": st.integers(1, cpus),
        "memory_mb": st.integers(8, 2 * per_node * nodes // 3),
        "work_s": st.floats(0.05, 1.0),
        "arrival_s": st.floats(0.0, 1.0),
        "spacing_s": st.floats(0.0, 0.5),
    }), min_size=1, max_size=4))
    trigger = draw(st.sampled_from([0, 8, 16]))
    policy = {
        "name": draw(st.sampled_from(["cellular_disco", "cellular_disco", "fixed_partition",
                                      "disco_one_cell"])),
        "chunk_mb": chunk,
        "borrow_policy": draw(st.sampled_from(["paper", "none", "anywhere"])),
        "borrow_trigger_mb": trigger,
        "borrow_unit_mb": draw(st.sampled_from([2, 4, 8])),
        "lend_floor_mb": trigger + draw(st.sampled_from([0, 16, 32])),
        "numa_migration": draw(st.booleans()),
        "numa_replication": draw(st.booleans()),
        "numa_horizon_s": draw(st.sampled_from([1.0, 100.0])),
        "paging_skip_freed": draw(st.booleans()),
        "paging_shared_once": draw(st.booleans()),
        "paging_virtual_disk": draw(st.booleans()),
        "memory_tick_ms": draw(st.sampled_from([20.0, 100.0])),
        # shortages that wait (paging off), slow and fast loans, working sets referenced
        # fast or slowly (faults), NUMA moves that follow a VCPU at once or never
        "paging": draw(st.sampled_from([True, True, False])),
        "loan_mb_per_s": draw(st.sampled_from([10.0, 400.0])),
        "working_set_touch_s": draw(st.sampled_from([0.02, 0.1, 1.0])),
        "numa_settle_ms": draw(st.sampled_from([0.0, 500.0])),
    }
    if policy["name"] == "fixed_partition":
        per_cell = nodes // cells * cpus_per_node
        for g in groups:
            g["vcpus"] = min(g["vcpus"], per_cell)
    data = {
        "machine": {"nodes": nodes, "cpus_per_node": cpus_per_node,
                    "memory_per_node_mb": per_node},
        "cells": {"count": cells},
        "workload": {"vms": groups},
        "policy": policy,
        "sim": {"duration_s": 2.0, "check_invariants": True, "sample_interval_s": 0.5,
                "seed": draw(st.integers(0, 2**16))},
    }
    try:
        return SimConfig.from_dict(data)
    except ConfigError:  # paging off and a VM that can never fit: refused up front
        assume(False)
        raise


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(memory_configs())
def test_memory_is_conserved_on_random_machines_and_mixes(cfg):
    mon, m = run(cfg)
    mon.checker().audit_memory()
    fs, bw = mon.frames, mon.borrowing
    assert fs.on_loan == sum(k for d in fs.lent.values() for k in d.values())
    if bw.operations:
        assert bw.max_borrower_free < max(bw.trigger, 1)  # trigger 0: on demand, at 0 free
        assert bw.min_lender_free_after >= bw.floor
    # Loans never exceed what the lenders had: the reserves recount (audit), and what is still
    # in flight is part of them.
    assert fs.reserved == sum(k for d in fs.loan_free.values() for k in d.values()) >= 0
    now = mon.loop.now
    for (b, lender), q in bw.in_flight.items():
        pending = sum(e[1] for e in q if e[0] > now)
        assert 0 <= pending <= fs.loan_free.get(b, {}).get(lender, 0)
    if not cfg.policy.paging:
        assert m["paging_stall_s"] == 0.0
    if cfg.policy.borrow_policy == "none" or cfg.policy.name == "fixed_partition":
        assert m["borrow_operations"] == 0
    if not cfg.policy.paging:
        assert m["pages_out"] == 0
    # Every VM that ended gave all its memory back.
    for vm in mon.vms:
        if vm.status in ("done", "lost"):
            assert vm.id not in mon.guest.records


def test_all_memory_comes_back_when_every_vm_has_finished():
    cfg = SimConfig.from_dict({"machine": {"nodes": 4, "cpus_per_node": 2,
                                           "memory_per_node_mb": 128},
                               "cells": {"count": 2},
                               "workload": {"vms": [
                                   {"workload": "database", "vcpus": 4, "memory_mb": 320,
                                    "work_s": 2.0},
                                   {"workload": "pmake", "count": 2, "vcpus": 2,
                                    "memory_mb": 96, "work_s": 2.0, "arrival_s": 0.5},
                                   {"workload": "webserver", "count": 2, "vcpus": 2,
                                    "memory_mb": 64, "work_s": 1.0, "spacing_s": 1.0}]},
                               "sim": {"duration_s": 60.0, "check_invariants": True}})
    mon, m = run(cfg)
    assert m["vms_completed"] == m["vms_total"]
    fs = mon.frames
    assert not mon.guest.records and not mon.guest.regions
    assert fs.node_free == [fs.fpn] * 4
    assert fs.on_loan == 0
