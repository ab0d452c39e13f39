"""Moving a VCPU from one CPU's run queue to another's (PAPER.md, VCPU migration cost).

The cost depends on distance: same node (``migration_node_us``), other node in the cell
(``migration_cell_us``, mostly copying the software TLB), other cell (``migration_remote_us``);
then the L2 re-warms for ``cache_warmup_ms`` at ``cache_warmup_slowdown`` of the normal rate,
charged as ``cache_warmup_ms * (1 - cache_warmup_slowdown)`` of lost time. Both are monitor
overhead the VCPU pays before it progresses again; a moved VCPU is ``cold`` until it next starts,
so it pays no VM-switch re-warm on top (``execution.py``). A VCPU moved to another cell makes its VM
depend on that cell too (``vm.visited_cells``), which the fault model uses; every move is
announced on the bus (``vcpu_moved``).
"""

from __future__ import annotations

from disco.hardware import OTHER_CELL, SAME_CELL, SAME_NODE, Machine
from disco.vmm.bus import Bus
from disco.vmm.reporting import Report
from disco.vmm.state import BLOCKED, CPU, IDLE, RUNNABLE, VCPU, MonitorState


class VcpuMigrator:
    def __init__(self, machine: Machine, state: MonitorState, bus: Bus, node_s: float,
                 cell_s: float, remote_s: float, warmup_s: float) -> None:
        self.machine = machine
        self.state = state
        self.bus = bus
        self.cost = {SAME_NODE: node_s + warmup_s, SAME_CELL: cell_s + warmup_s,
                     OTHER_CELL: remote_s + warmup_s}
        self.moves_node = 0
        self.moves_cell = 0
        self.moves_remote = 0

    def migrate(self, v: VCPU, dest: CPU) -> int:
        """Move a VCPU that is not running (waiting, blocked or guest-idle) to ``dest``'s run
        queue; returns the distance class. Only a waiting VCPU counts in the CPUs' load; a
        blocked one's wake-up finds its new CPU (it reads ``v.cpu`` when it fires)."""
        assert v.state in (RUNNABLE, BLOCKED, IDLE), "a running VCPU is never moved"
        state = self.state
        src = state.cpus[v.cpu]
        dist = self.machine.distance(src.index, dest.index)
        state.remove_from_queue(v)
        waiting = v.state == RUNNABLE
        if waiting:
            src.waiting -= 1
            src.load -= 1
        v.cpu = dest.index
        state.enqueue(v, dest)
        if waiting:
            dest.waiting += 1
            dest.load += 1
        v.debt += self.cost[dist]
        v.cold = True
        if dist == SAME_NODE:
            self.moves_node += 1
        elif dist == SAME_CELL:
            self.moves_cell += 1
        else:
            self.moves_remote += 1
        self.bus.vcpu_moved(v, src, dest)
        return dist

    def carry(self, v: VCPU, dest: CPU) -> None:
        """A blocked or guest-idle VCPU moves with its whole VM (``vm_migration.py``): it pays
        the move like any other, counts as no CPU's load and is not a balancer's move."""
        state = self.state
        src = state.cpus[v.cpu]
        state.remove_from_queue(v)
        v.cpu = dest.index
        state.enqueue(v, dest)
        v.debt += self.cost[self.machine.distance(src.index, dest.index)]
        v.cold = True
        self.bus.vcpu_moved(v, src, dest)

    def report(self, out: Report) -> None:
        out.metrics.update({"migrations_node": self.moves_node,
                            "migrations_cell": self.moves_cell,
                            "migrations_remote": self.moves_remote})
