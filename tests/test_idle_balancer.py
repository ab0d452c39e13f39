"""The idle balancer steals nearby work and never crosses a cell (PAPER.md, CPU management)."""

from statistics import fmean

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
    """Over eight seeds (one small run is chaotic: with issues 17 and 18 together seeds 0, 3
    and 7 lose by 1-4 %, the others win by 4-12 %; 0.957 of the makespan over the eight),
    stealing within the cell shortens the runs and idles less."""
    on, off = [], []
    for seed in range(8):
        base = {**LONG_RUNS, "sim": {"seed": seed}}
        on.append(simulate(small_config({**base, "policy": {"periodic_balancer": False}})).metrics)
        off.append(simulate(small_config({**base, "policy": {"periodic_balancer": False,
                                                             "idle_balancer": False}})).metrics)
    assert all(r["balancer_moves_idle"] == 0 for r in off)
    assert all(r["balancer_moves_idle"] > 0 for r in on)
    assert fmean(r["makespan_s"] for r in on) < 0.97 * fmean(r["makespan_s"] for r in off)
    assert fmean(r["idle_fraction"] for r in on) < fmean(r["idle_fraction"] for r in off)


# -- the idle balancer alone, on a few CPUs by hand --------------------------------------------

def test_idle_balancer_alone_steals_from_its_node_then_its_cell_never_another_cell():
    # Two cells of two nodes of two CPUs: CPU 0's node has CPU 1; its cell has CPUs 2 and 3.
    w = world(nodes=4, cpus_per_node=2, nodes_per_cell=2)
    balancer = IdleBalancer(w.loop, w.machine, w.cpus, w.migrator(), gang=True, costed=False)
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
    balancer = IdleBalancer(w.loop, w.machine, w.cpus, w.migrator(), gang=True, costed=False)
    late = w.queue(w.vm(1), [1])
    late.wait_since = 2.0
    early = w.queue(w.vm(1), [2])
    early.wait_since = 1.0
    mine = w.queue(w.vm(2), [0, 3])  # has a VCPU on CPU 0 already
    assert balancer.steal(w.cpus[0]) is early.vcpus[0]
    assert balancer.steal(w.cpus[0]) is late.vcpus[0]
    assert balancer.steal(w.cpus[0]) is None  # mine's other VCPU would share CPU 0
    assert mine.vcpus[1].cpu == 3


def test_idle_balancer_alone_steals_only_what_saves_more_waiting_than_the_move_costs():
    """A steal moves a VCPU (37 us + 4 ms re-warm in the same node): worth it behind a VCPU
    that runs on for 50 ms, not behind one that yields within a millisecond."""
    w = world(nodes=1, cpus_per_node=4)
    gang = w.gang()
    balancer = IdleBalancer(w.loop, w.machine, w.cpus, w.migrator(), gang=True)
    long_run = w.queue(w.vm(1, work_s=0.05), [1])
    short_run = w.queue(w.vm(1, work_s=0.0005), [2])
    gang.kick(w.cpus[1])
    gang.kick(w.cpus[2])
    w.loop.run(until=1e-6)  # both run now
    behind_long = w.queue(w.vm(1), [1])
    behind_short = w.queue(w.vm(1), [2])
    assert long_run.running and short_run.running
    assert balancer.wait_left(behind_long.vcpus[0]) > 0.04
    assert balancer.steal(w.cpus[0]) is behind_long.vcpus[0]
    assert balancer.steal(w.cpus[3]) is None  # behind_short's CPU frees up sooner
    assert behind_short.vcpus[0].cpu == 2


def test_idle_balancer_alone_parks_an_idle_cpu_and_offers_it_new_work_in_its_cell_only():
    w = world(nodes=2, cpus_per_node=2, nodes_per_cell=1)  # cells {0, 1} and {2, 3}
    balancer = IdleBalancer(w.loop, w.machine, w.cpus, w.migrator(), gang=True, costed=False)
    gang = w.gang(idle=balancer)
    for cpu in w.cpus:
        gang.kick(cpu)
    w.loop.run(until=1e-6)
    assert all(cpu.parked for cpu in w.cpus) and balancer.parked[0] == {0: w.cpus[0],
                                                                          1: w.cpus[1]}
    busy = w.queue(w.vm(1, work_s=1.0), [0])
    gang.kick(w.cpus[0])
    w.loop.run(until=2e-6)
    assert w.cpus[0].current is busy.vcpus[0]
    waiter = w.queue(w.vm(1), [0])
    assert balancer.offer(waiter.vcpus[0]) is w.cpus[1]  # its node's parked CPU, not cell 1's
    assert not w.cpus[1].parked and balancer.parked[1] == {2: w.cpus[2], 3: w.cpus[3]}
    assert balancer.offer(waiter.vcpus[0]) is None  # nobody free is parked in cell 0 now
    assert balancer.parked[0] == {} and not w.cpus[0].parked  # busy CPU 0 dropped on the way
