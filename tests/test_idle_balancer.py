"""The idle balancer steals nearby work and never crosses a cell (PAPER.md, CPU management)."""

from conftest import small_config
from parts import world

from disco import simulate
from disco.vmm.idle_balancer import IdleBalancer

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


# -- the idle balancer alone, on a few CPUs by hand --------------------------------------------

def test_idle_balancer_alone_steals_from_its_node_then_its_cell_never_another_cell():
    # Two cells of two nodes of two CPUs: CPU 0's node has CPU 1; its cell has CPUs 2 and 3.
    w = world(nodes=4, cpus_per_node=2, nodes_per_cell=2)
    balancer = IdleBalancer(w.machine, w.cpus, w.migrator(), gang=True)
    near = w.queue(w.vm(1), [1])
    far = w.queue(w.vm(1), [2])
    other_cell = w.queue(w.vm(1), [4])
    assert balancer.steal(w.cpus[0]) is near.vcpus[0]  # same node first
    assert balancer.steal(w.cpus[0]) is far.vcpus[0]  # then the rest of the cell
    assert balancer.steal(w.cpus[0]) is None  # never across cells
    assert other_cell.vcpus[0].cpu == 4 and balancer.moves == 2
    assert [v.cpu for v in (near.vcpus[0], far.vcpus[0])] == [0, 0]


def test_idle_balancer_alone_takes_the_longest_waiting_vm_and_never_doubles_one_up():
    w = world(nodes=1, cpus_per_node=4)
    balancer = IdleBalancer(w.machine, w.cpus, w.migrator(), gang=True)
    late = w.queue(w.vm(1), [1])
    late.wait_since = 2.0
    early = w.queue(w.vm(1), [2])
    early.wait_since = 1.0
    mine = w.queue(w.vm(2), [0, 3])  # has a VCPU on CPU 0 already
    assert balancer.steal(w.cpus[0]) is early.vcpus[0]
    assert balancer.steal(w.cpus[0]) is late.vcpus[0]
    assert balancer.steal(w.cpus[0]) is None  # mine's other VCPU would share CPU 0
    assert mine.vcpus[1].cpu == 3
