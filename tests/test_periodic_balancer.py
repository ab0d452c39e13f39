"""The periodic balancer evens load across the load tree, keeping VMs in their cells
(PAPER.md, CPU management; the knobs' directions are in test_scheduling_knobs.py)."""

from conftest import small_config
from parts import Footprint, world

from disco import simulate
from disco.config import FaultsConfig, PolicyConfig
from disco.vmm.cell_lifecycle import CellLifecycle
from disco.vmm.containment import Containment
from disco.vmm.periodic_balancer import PeriodicBalancer
from disco.vmm.vm_migration import VMMigrator

# Eight 1-VCPU CPU-bound VMs pinned to cell 0 (4 CPUs): load 2 per CPU there, 0 in cell 1.
# 16 MB each: a whole VM's copy takes (16 + 16) / 50 = 0.64 s, which pays for 2 s jobs.
CROWDED = {"workload": {"vms": [
    {"workload": "raytrace", "count": 8, "vcpus": 1, "work_s": 2.0, "home_cell": 0,
     "memory_mb": 16},
]}, "sim": {"duration_s": 10.0}}


def _cell_load(r, cell):
    return [ld for ld, c, t in zip(r.timeline["load"], r.timeline["cell"], r.timeline["time_s"],
                                   strict=True) if c == cell and t <= 2.0]


def test_periodic_balancer_evens_out_two_cells_by_moving_whole_vms():
    r = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False}}))
    m = r.metrics
    assert m["balancer_vm_moves"] + m["balancer_vm_swaps"] >= 2 and m["balancer_splits"] == 0
    assert _cell_load(r, 0)[-1] == _cell_load(r, 1)[-1] == 4  # at 2 s
    off = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False,
                                                       "periodic_balancer": False}}))
    assert off.metrics["makespan_s"] > 1.3 * m["makespan_s"]


def test_periodic_balancer_keeps_vms_in_their_cells_when_splitting_is_off():
    for extra in ({"allow_cell_split": False}, {"containment_price": 0.0,
                                                "allow_cell_split": False}):
        r = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False,
                                                         "periodic_vm_moves": False, **extra}}))
        assert r.metrics["migrations_remote"] == 0 and r.metrics["balancer_splits"] == 0


def test_period_is_a_real_knob():
    slow = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False,
                                                        "periodic_period_ms": 1000.0}}))
    fast = simulate(small_config({**CROWDED, "policy": {"idle_balancer": False,
                                                        "periodic_period_ms": 20.0}}))
    assert fast.metrics["makespan_s"] < slow.metrics["makespan_s"]


# -- the periodic balancer alone, on a few CPUs by hand ----------------------------------------

def _crowded(allow_split=True, cross_cell=True, **knobs):
    """Two cells of one node of two CPUs; four 1-VCPU VMs wait on CPU 0."""
    w = world(nodes=2, cpus_per_node=2, nodes_per_cell=1)
    gang = w.gang()
    p = PolicyConfig(periodic_period_ms=100.0, periodic_threshold=1.0,
                     allow_cell_split=allow_split, **knobs)
    balancer = PeriodicBalancer(w.loop, w.machine, w.state, w.migrator(), gang, None, p,
                                cross_cell=cross_cell)
    for _ in range(4):
        w.queue(w.vm(1), [0])
    return w, balancer


def test_periodic_balancer_alone_evens_the_load_tree_a_move_per_tree_node_per_tick():
    w, balancer = _crowded(containment_price=0.0)  # containment free: the old behaviour
    balancer.tick()
    assert [c.load for c in w.cpus] == [2, 1, 1, 0] and balancer.moves == 2
    balancer.tick()
    assert [c.load for c in w.cpus] == [1, 1, 1, 1] and balancer.moves == 3
    balancer.tick()
    assert balancer.moves == 3  # balanced: nothing more to do


def test_periodic_balancer_alone_splits_a_vm_only_for_a_gain_worth_the_containment_price():
    """The first split moves a VCPU off a CPU of load 4 onto an idle one: 0.75 CPU gained,
    above the 0.5 price; the second, off load 2, gains 0.5: not enough."""
    w, balancer = _crowded()
    balancer.tick()
    balancer.tick()
    assert [c.load for c in w.cpus] == [2, 1, 1, 0] and balancer.splits == 1
    w, balancer = _crowded(containment_price=1.0)  # no split is worth a whole CPU
    balancer.tick()
    balancer.tick()
    assert [c.load for c in w.cpus] == [2, 2, 0, 0] and balancer.splits == 0


def test_periodic_balancer_alone_keeps_vms_in_their_cells_unless_splitting_is_allowed():
    w, balancer = _crowded(allow_split=False)
    balancer.tick()
    balancer.tick()
    assert [c.load for c in w.cpus] == [2, 2, 0, 0]  # balanced within cell 0 only
    w, balancer = _crowded(cross_cell=False)  # a system that never crosses cells
    balancer.tick()
    balancer.tick()
    assert [c.load for c in w.cpus] == [2, 2, 0, 0]


def _swap_case(swaps: bool):
    """One node of two CPUs. CPU 0: two waiting VCPUs (load 2); CPU 1: two mostly blocked ones
    of smoothed load 0.5 and 0.2 (load 0.7). Moving one waiting VCPU over overshoots (1 vs
    1.7); swapping it for the 0.5 one leaves 1.5 vs 1.2. Loads are set by hand (a smoothing
    time so long that a tick leaves them as they are)."""
    w = world(nodes=1, cpus_per_node=2)
    p = PolicyConfig(periodic_smoothing_ms=1e12, periodic_swaps=swaps)
    balancer = PeriodicBalancer(w.loop, w.machine, w.state, w.migrator(), w.gang(), None, p,
                                cross_cell=True)
    v, x = (w.queue(w.vm(1), [0]).vcpus[0] for _ in range(2))
    q, u = (w.queue(w.vm(1), [1]).vcpus[0] for _ in range(2))
    for blocked, avg in ((q, 0.5), (u, 0.2)):
        blocked.state, blocked.avg, blocked.vm.runnable = 3, avg, 0  # BLOCKED
    w.cpus[1].waiting = w.cpus[1].load = 0
    balancer.tick()
    return w, balancer, (v, x, q, u)


def test_periodic_balancer_alone_swaps_where_a_single_move_would_overshoot():
    w, balancer, (v, x, q, u) = _swap_case(swaps=True)
    assert balancer.swaps_made == 1 and balancer.moves == 2
    assert (v.cpu, x.cpu, q.cpu, u.cpu) == (1, 0, 0, 1)
    w, balancer, (v, x, q, u) = _swap_case(swaps=False)  # the old balancer: a move
    assert balancer.swaps_made == 0 and balancer.moves == 1 and (v.cpu, x.cpu) == (1, 0)


def _two_vms_in_one_cell(memory_mb=34):
    """Two cells of one node of two CPUs; two 2-VCPU VMs queued in cell 0, cell 1 empty.
    Copies at 100 MB/s: (34 + 16) MB take half a second."""
    w = world(nodes=2, cpus_per_node=2, nodes_per_cell=1)
    gang = w.gang()
    lifecycle = CellLifecycle(w.loop, w.machine, w.state, w.acct, gang, w.bus)
    rule = Containment(w.loop, w.state, Footprint(), data_follow_s=1.0)
    w.bus.on_vcpu_moved(rule.on_vcpu_moved)
    f = FaultsConfig(migration_mb_per_s=100.0, io_state_mb=16.0)
    migrator = w.migrator()
    vms = VMMigrator(w.loop, w.machine, w.state, w.bus, f, True, rule, lifecycle, gang,
                     migrator)
    p = PolicyConfig(periodic_smoothing_ms=0.0)
    balancer = PeriodicBalancer(w.loop, w.machine, w.state, migrator, gang, vms, p,
                                cross_cell=True)
    pair = [w.queue(w.vm(2, work_s=20.0, memory_mb=memory_mb), [0, 1]) for _ in range(2)]
    for vm in pair:
        rule.on_vm_arrived(vm)
    return w, balancer, vms, pair


def test_periodic_balancer_alone_moves_a_whole_vm_across_cells_rather_than_split_it():
    w, balancer, vms, (a, b) = _two_vms_in_one_cell()
    balancer.tick()
    assert balancer.vm_moves_made == 1 and balancer.splits == 0 and balancer.moves == 0
    assert list(vms.in_flight.values()) == [(1,)]
    balancer.tick()  # the move in flight counts as done: no second copy for one imbalance
    assert balancer.vm_moves_made == 1 and len(vms.in_flight) == 1
    w.loop.run(until=0.6)  # the copy ends, the VM switches
    moved = next(vm for vm in (a, b) if vm.home_cells == (1,))
    assert set(moved.cell_vcpus) == {1} and vms.completed == 1


def test_periodic_balancer_alone_leaves_a_vm_whose_copy_would_not_pay():
    w, balancer, vms, _ = _two_vms_in_one_cell(memory_mb=2000)  # a 20 s copy, a 10 s horizon
    balancer.tick()
    assert balancer.vm_moves_made == 0 and balancer.splits == 0 and not vms.in_flight


def test_a_longer_cross_cell_horizon_lets_more_whole_vm_copies_pay():
    """``periodic_vm_horizon_s``: a whole-VM move across cells pays only if its gain within the
    horizon (minus the copy time) beats its cost and containment price, so a longer horizon
    makes more of them (shifting load: 3 / 3.5 / 10.5 VM moves at 1 / 10 / 30 s, seeds 0-1)."""
    from disco.framework.compose import compose

    def vm_moves(horizon: float) -> int:
        return sum(simulate(compose(["workload=mix_shifting", f"sim.seed={seed}",
                                     f"policy.periodic_vm_horizon_s={horizon}"]))
                   .metrics["balancer_vm_moves"] for seed in (0, 1))

    short, default, long_ = vm_moves(1.0), vm_moves(10.0), vm_moves(30.0)
    assert short <= default < long_
