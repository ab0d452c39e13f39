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
    }
    return SimConfig.from_dict({
        "machine": {"nodes": nodes, "cpus_per_node": cpus_per_node},
        "cells": {"count": cells},
        "workload": {"vms": groups},
        "policy": policy,
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
