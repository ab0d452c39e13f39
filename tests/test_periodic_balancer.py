"""The periodic balancer evens load across the load tree (PAPER.md, CPU management)."""

from conftest import small_config
from parts import world

from disco import simulate
from disco.vmm.periodic_balancer import PeriodicBalancer

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


# -- the periodic balancer alone, on a few CPUs by hand ----------------------------------------

def _crowded(allow_split=True, cross_cell=True):
    """Two cells of one node of two CPUs; four 1-VCPU VMs wait on CPU 0."""
    w = world(nodes=2, cpus_per_node=2, nodes_per_cell=1)
    gang = w.gang()
    balancer = PeriodicBalancer(w.loop, w.machine, w.state, w.migrator(), gang, period_s=0.1,
                                threshold=1.0, allow_split=allow_split, cross_cell=cross_cell)
    for _ in range(4):
        w.queue(w.vm(1), [0])
    return w, balancer


def test_periodic_balancer_alone_evens_the_load_tree_a_move_per_tree_node_per_tick():
    w, balancer = _crowded()
    balancer.tick()
    assert [c.load for c in w.cpus] == [2, 1, 1, 0] and balancer.moves == 2
    balancer.tick()
    assert [c.load for c in w.cpus] == [1, 1, 1, 1] and balancer.moves == 3
    balancer.tick()
    assert balancer.moves == 3  # balanced: nothing more to do


def test_periodic_balancer_alone_keeps_vms_in_their_cells_unless_splitting_is_allowed():
    w, balancer = _crowded(allow_split=False)
    balancer.tick()
    balancer.tick()
    assert [c.load for c in w.cpus] == [2, 2, 0, 0]  # balanced within cell 0 only
    w, balancer = _crowded(cross_cell=False)  # a system that never crosses cells
    balancer.tick()
    balancer.tick()
    assert [c.load for c in w.cpus] == [2, 2, 0, 0]
