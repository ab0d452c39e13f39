"""The periodic balancer evens load across the load tree (PAPER.md, CPU management)."""

from conftest import small_config

from disco import simulate

# Eight 1-VCPU CPU-bound VMs pinned to cell 0 (4 CPUs): load 2 per CPU there, 0 in cell 1.
CROWDED = {"workload": {"vms": [
    {"workload": "raytrace", "count": 8, "vcpus": 1, "work_s": 2.0, "home_cell": 0},
]}, "sim": {"duration_s": 10.0}}


def _cell_load(r, cell):
    return [ld for ld, c, t in zip(r.timeline["load"], r.timeline["cell"], r.timeline["time_s"],
                                   strict=True) if c == cell and t <= 2.0]


def test_periodic_balancer_evens_out_two_halves():
    r = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False}}))
    assert r.metrics["balancer_moves_periodic"] >= 4
    assert _cell_load(r, 0)[0] == _cell_load(r, 1)[0] == 4
    off = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False,
                                                       "periodic_balancer": False}}))
    assert off.metrics["makespan_s"] > 1.5 * r.metrics["makespan_s"]


def test_periodic_balancer_keeps_vms_in_their_cells_when_splitting_is_off():
    r = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False,
                                                     "allow_cell_split": False}}))
    assert r.metrics["migrations_remote"] == 0


def test_period_is_a_real_knob():
    slow = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False,
                                                        "periodic_period_ms": 1000.0}}))
    fast = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False,
                                                        "periodic_period_ms": 20.0}}))
    assert fast.metrics["makespan_s"] < slow.metrics["makespan_s"]
