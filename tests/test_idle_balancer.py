"""The idle balancer steals nearby work and never crosses a cell (PAPER.md, CPU management)."""

from conftest import small_config

from disco import simulate

# All load pinned into cell 0 of a 2-cell machine: cell 1 sits idle unless work crosses over.
PINNED = {"workload": {"vms": [
    {"workload": "pmake", "count": 4, "vcpus": 2, "work_s": 1.0, "home_cell": 0},
    {"workload": "webserver", "count": 2, "vcpus": 3, "work_s": 1.0, "home_cell": 0},
]}}


def test_idle_balancer_never_steals_across_cells():
    r = simulate(small_config({**PINNED, "policy": {"periodic_balancer": False}}))
    assert r.metrics["balancer_moves_idle"] > 0
    assert r.metrics["migrations_remote"] == 0
    assert all(c == 1 for c in r.vms["cells_visited"])
    cell1 = [u for u, c in zip(r.timeline["utilization"], r.timeline["cell"], strict=True)
             if c == 1]
    assert max(cell1) == 0.0


# Long compute runs: a steal (migration plus ~4 ms of cache re-warming) pays for itself. With
# pmake's 15 ms runs it does not, and the idle balancer then costs more than it gains.
LONG_RUNS = {"workload": {"vms": [
    {"workload": "database", "count": 3, "vcpus": 2, "work_s": 1.0, "home_cell": 0},
    {"workload": "raytrace", "count": 2, "vcpus": 2, "work_s": 1.0, "home_cell": 0},
]}}


def test_idle_balancer_shortens_runs_within_the_cell():
    on = simulate(small_config({**LONG_RUNS, "policy": {"periodic_balancer": False}})).metrics
    off = simulate(small_config({**LONG_RUNS, "policy": {"periodic_balancer": False,
                                                          "idle_balancer": False}})).metrics
    assert off["balancer_moves_idle"] == 0 and on["balancer_moves_idle"] > 0
    assert on["makespan_s"] < off["makespan_s"]
    assert on["idle_fraction"] < off["idle_fraction"]
