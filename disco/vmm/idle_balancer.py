"""The idle balancer (PAPER.md, CPU management).

When a CPU has nothing it can run, it steals a waiting VCPU from the closest run queues first:
other CPUs of its node, then the rest of its cell, never another cell (stealing across cells
would break fault containment). It takes only a VCPU whose VM has no other VCPU on this CPU and
whose gang can then start at once, and among those the one whose VM waited longest. It uses
only the queues of its own cell: local information, as in the paper.

**It keeps looking** (``policy.idle_rewake``). A CPU whose steal found nothing *parks* in its
cell's parked set. When a VCPU starts waiting on a busy CPU (it woke up, its VM arrived, its gang
or its slice was preempted: the gang scheduler calls ``offer``), the nearest parked CPU of that
cell that could take it (its node first) is woken to steal again. Nothing is scanned when no CPU
of the cell is parked, and a parked CPU that became busy meanwhile is dropped from the set the
next time the set is walked (it is in the set at most once), so there is no O(CPUs) work per
event and no hook on the dispatch path.

**A steal must pay** (``policy.idle_steal_costed``): the wait it saves, the VCPU's waiting gang
members (one with gang scheduling off) times the time until whatever runs on its CPU yields
(its slice ends, or it blocks or finishes first), must exceed what the move costs at that
distance (``vcpu_migration.py``: migration and cache re-warm) beyond the VM-switch re-warm the
VCPU pays anyway when it resumes after another VM (``execution.py``).
"""

from __future__ import annotations

from disco.engine import EventLoop
from disco.hardware import SAME_CELL, SAME_NODE, Machine
from disco.vmm.reporting import Report
from disco.vmm.state import CPU, INF, RUNNABLE, VCPU, VM, startable_members
from disco.vmm.trace_hooks import NO_TRACE, TraceHooks
from disco.vmm.vcpu_migration import VcpuMigrator


class IdleBalancer:
    """Asked by the gang scheduler when a CPU has nothing it can run; ``gang`` says whether
    gangs must be able to start whole (gang scheduling on). ``rewake``: park idle CPUs and wake
    them for new work (``offer``); ``costed``: a steal must save more waiting than it costs,
    ``rewarm_s`` being the VM-switch re-warm a VCPU pays in any case."""

    def __init__(self, loop: EventLoop, machine: Machine, cpus: list[CPU],
                 migrator: VcpuMigrator, gang: bool, rewake: bool = True, costed: bool = True,
                 rewarm_s: float = 0.0) -> None:
        self.loop = loop
        self.cpus = cpus
        self.migrator = migrator
        self.gang = gang
        self.rewake = rewake
        self.costed = costed
        cost = migrator.cost
        self.ring_cost = (cost[SAME_NODE] - rewarm_s, cost[SAME_CELL] - rewarm_s)
        self.moves = 0
        self.wakes = 0
        self.trace: TraceHooks = NO_TRACE  # runner.build sets a tracer when tracing
        self.rings: list[tuple[tuple[CPU, ...], tuple[CPU, ...]]] = []
        self.peers: list[tuple[CPU, ...]] = []  # both rings: a quick "nobody waits" exit
        m = machine
        for cpu in cpus:
            node = tuple(cpus[i] for i in m.node_cpus(cpu.node) if i != cpu.index)
            cell = tuple(cpus[i] for i in m.cell_cpus(cpu.cell) if cpus[i].node != cpu.node)
            self.rings.append((node, cell))
            self.peers.append(node + cell)
        # Per cell, its parked CPUs by index, in the order they parked (a dict: deterministic
        # order, O(1) removal).
        self.parked: list[dict[int, CPU]] = [{} for _ in range(m.cells)]

    def report(self, out: Report) -> None:
        out.metrics["balancer_moves_idle"] = self.moves
        out.metrics["idle_rewakes"] = self.wakes

    def steal(self, cpu: CPU) -> VCPU | None:
        """Move the best waiting VCPU nearby into ``cpu``'s queue and return it (the caller
        dispatches it); None if there is none to take."""
        for peer in self.peers[cpu.index]:
            if peer.waiting:
                break
        else:
            return None
        gang_on = self.gang
        cpus = self.cpus
        costed = self.costed
        mine: set[VM] | None = None  # VMs already on ``cpu``, gathered only if needed
        for r, ring in enumerate(self.rings[cpu.index]):
            best: VCPU | None = None
            best_key: tuple = ()
            for peer in ring:
                if not peer.waiting:
                    continue
                for w in peer.queue:
                    if w.state != RUNNABLE:
                        continue
                    key = (w.vm.wait_since, w.vm.id) if gang_on else (w.wait_since, w.vm.id,
                                                                     w.index)
                    if best is not None and key >= best_key:
                        continue
                    if mine is None:
                        mine = {u.vm for u in cpu.queue}
                    if w.vm in mine:
                        continue
                    # could w's gang start at once if w were on this free CPU?
                    n = startable_members(w.vm, cpus, skip=w) if gang_on else 0
                    if n < 0:
                        continue
                    if costed and (n + 1) * self.wait_left(w) <= self.ring_cost[r]:
                        continue  # its CPU frees up soon enough: the move would not pay
                    best, best_key = w, key
            if best is not None:
                self.migrator.migrate(best, cpu)
                self.moves += 1
                self.trace.idle_steal(best, cpu)
                return best
        return None

    def wait_left(self, w: VCPU) -> float:
        """How long ``w`` would still wait where it is: until whatever runs on its CPU yields
        (its slice ends, or it blocks or finishes first)."""
        cur = self.cpus[w.cpu].current
        if cur is None:
            return 0.0
        ev = cur.vm.slice_event if self.gang else self.cpus[w.cpu].slice_event
        end = ev.time if ev is not None else INF
        run_end = cur.event
        if run_end is not None and run_end.time < end:
            end = run_end.time
        return end - self.loop.now

    # -- keep looking ---------------------------------------------------------------------------
    def park(self, cpu: CPU) -> None:
        """``cpu`` found nothing to steal: if it is still free, it waits in its cell's parked
        set (a stolen VCPU it could not start leaves it free too)."""
        if self.rewake and not cpu.parked and cpu.online and cpu.current is None:
            cpu.parked = True
            self.parked[cpu.cell][cpu.index] = cpu

    def offer(self, v: VCPU) -> CPU | None:
        """``v`` now waits on a busy CPU: the parked CPU of its cell to wake so that it steals
        again (the nearest one that could take ``v``), removed from the set; None if no parked
        CPU could. O(1) when none is parked; else O(parked CPUs + the VM's VCPUs)."""
        if v.cpu < 0:
            return None
        cpu = self.cpus[v.cpu]
        parked = self.parked[cpu.cell]
        if not parked:
            return None
        vm = v.vm
        n = startable_members(vm, self.cpus, skip=v) if self.gang else 0
        if n < 0:
            return None  # its gang cannot start now wherever v is
        if self.costed and (n + 1) * self.wait_left(v) <= self.ring_cost[0]:
            return None  # not worth even the cheapest steal
        best: CPU | None = None
        for c in self.rings[cpu.index][0]:  # its node first
            if c.parked and c.current is None and c.online and not _holds(c, vm):
                best = c
                break
        if best is None:
            stale: list[CPU] = []
            for c in parked.values():
                if c.current is not None or not c.online:
                    stale.append(c)  # busy or paused since it parked: it will ask again
                elif not _holds(c, vm):
                    best = c
                    break
            for c in stale:
                del parked[c.index]
                c.parked = False
        if best is None:
            return None
        del parked[best.index]
        best.parked = False
        self.wakes += 1
        return best


def _holds(cpu: CPU, vm: VM) -> bool:
    for u in cpu.queue:
        if u.vm is vm:
            return True
    return False
