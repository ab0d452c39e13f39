"""The idle balancer (PAPER.md, CPU management).

When a CPU has nothing it can run, it steals a waiting VCPU from the closest run queues first:
other CPUs of its node, then the rest of its cell, never another cell (stealing across cells
would break fault containment). It takes only a VCPU whose VM has no other VCPU on this CPU and
whose gang can then start at once, and among those the one whose VM waited longest. It uses
only the queues of its own cell: local information, as in the paper.
"""

from __future__ import annotations

from disco.hardware import Machine
from disco.vmm.reporting import Report
from disco.vmm.state import CPU, RUNNABLE, VCPU, VM, startable_members
from disco.vmm.trace_hooks import NO_TRACE, TraceHooks
from disco.vmm.vcpu_migration import VcpuMigrator


class IdleBalancer:
    """Asked by the gang scheduler when a CPU has nothing it can run; ``gang`` says whether
    gangs must be able to start whole (gang scheduling on)."""

    def __init__(self, machine: Machine, cpus: list[CPU], migrator: VcpuMigrator,
                 gang: bool) -> None:
        self.cpus = cpus
        self.migrator = migrator
        self.gang = gang
        self.moves = 0
        self.trace: TraceHooks = NO_TRACE  # runner.build sets a tracer when tracing
        self.rings: list[tuple[tuple[CPU, ...], tuple[CPU, ...]]] = []
        self.peers: list[tuple[CPU, ...]] = []  # both rings: a quick "nobody waits" exit
        m = machine
        for cpu in cpus:
            node = tuple(cpus[i] for i in m.node_cpus(cpu.node) if i != cpu.index)
            cell = tuple(cpus[i] for i in m.cell_cpus(cpu.cell) if cpus[i].node != cpu.node)
            self.rings.append((node, cell))
            self.peers.append(node + cell)

    def report(self, out: Report) -> None:
        out.metrics["balancer_moves_idle"] = self.moves

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
        mine: set[VM] | None = None  # VMs already on ``cpu``, gathered only if needed
        for ring in self.rings[cpu.index]:
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
                    if gang_on and startable_members(w.vm, cpus, skip=w) < 0:
                        continue
                    best, best_key = w, key
            if best is not None:
                self.migrator.migrate(best, cpu)
                self.moves += 1
                self.trace.idle_steal(best, cpu)
                return best
        return None
