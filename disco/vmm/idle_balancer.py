"""The idle balancer (PAPER.md, CPU management).

When a CPU has nothing it can run, it steals a waiting VCPU from the closest run queues first:
other CPUs of its node, then the rest of its cell, never another cell (stealing across cells
would break fault containment). It takes only a VCPU whose VM has no other VCPU on this CPU and
whose gang can then start at once, and among those the one whose VM waited longest. It uses
only the queues of its own cell: local information, as in the paper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from disco.vmm.gang import startable_members
from disco.vmm.state import CPU, RUNNABLE, VCPU, VM

if TYPE_CHECKING:
    from disco.vmm.monitor import Monitor


class IdleBalancer:
    def __init__(self, mon: Monitor) -> None:
        self.mon = mon
        m = mon.machine
        cpus = mon.cpus
        self.rings: list[tuple[tuple[CPU, ...], tuple[CPU, ...]]] = []
        self.peers: list[tuple[CPU, ...]] = []  # both rings: a quick "nobody waits" exit
        for cpu in cpus:
            node = tuple(cpus[i] for i in m.node_cpus(cpu.node) if i != cpu.index)
            cell = tuple(cpus[i] for i in m.cell_cpus(cpu.cell) if cpus[i].node != cpu.node)
            self.rings.append((node, cell))
            self.peers.append(node + cell)

    def steal(self, cpu: CPU) -> bool:
        for peer in self.peers[cpu.index]:
            if peer.waiting:
                break
        else:
            return False
        gang = self.mon.gang
        gang_on = gang.gang
        cpus = self.mon.cpus
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
                self.mon.migrator.migrate(best, cpu)
                self.mon.counters["balancer_moves_idle"] += 1
                if gang_on:
                    gang.try_dispatch(best.vm, cpu)
                else:
                    gang.run_alone(best, cpu)
                return True
        return False
