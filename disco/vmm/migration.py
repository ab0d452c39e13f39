"""Moving a waiting VCPU from one CPU's run queue to another's (PAPER.md, VCPU migration cost).

The cost depends on distance: same node ~37 us, other node in the cell ~520 us (mostly copying
the 32 KB software TLB), other cell ~1520 us; then ~8 ms of slower progress while the 4 MB L2
re-warms, charged as ``cache_warmup_ms * (1 - cache_warmup_slowdown)`` of lost time. Both are
monitor overhead the VCPU pays before it progresses again. A VCPU moved to another cell makes
its VM depend on that cell too (``visited_cells``), which the fault model uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from disco.hardware import OTHER_CELL, SAME_CELL, SAME_NODE
from disco.vmm.state import CPU, RUNNABLE, VCPU

if TYPE_CHECKING:
    from disco.vmm.monitor import Monitor

_COUNTER = {SAME_NODE: "migrations_node", SAME_CELL: "migrations_cell",
            OTHER_CELL: "migrations_remote"}


class Migrator:
    def __init__(self, mon: Monitor) -> None:
        p = mon.cfg.policy
        self.mon = mon
        warm = p.cache_warmup_ms * 1e-3 * (1.0 - p.cache_warmup_slowdown)
        self.cost = {SAME_NODE: p.migration_node_us * 1e-6 + warm,
                     SAME_CELL: p.migration_cell_us * 1e-6 + warm,
                     OTHER_CELL: p.migration_remote_us * 1e-6 + warm}

    def migrate(self, v: VCPU, dest: CPU) -> int:
        """Move a RUNNABLE VCPU to ``dest``'s run queue; returns the distance class."""
        assert v.state == RUNNABLE, "only a waiting VCPU is moved"
        mon = self.mon
        src = mon.cpus[v.cpu]
        dist = mon.machine.distance(src.index, dest.index)
        mon.remove_from_queue(v)
        src.waiting -= 1
        src.load -= 1
        v.cpu = dest.index
        self.enqueue(v, dest)
        dest.waiting += 1
        dest.load += 1
        v.debt += self.cost[dist]
        mon.counters[_COUNTER[dist]] += 1
        if mon.hooks:
            mon.notify("on_vcpu_moved", v, src, dest)
        return dist

    def enqueue(self, v: VCPU, dest: CPU) -> None:
        """Put ``v`` in ``dest``'s queue and record the cell it now depends on."""
        mon = self.mon
        dest.queue.append(v)
        mon.cell_assigned[dest.cell] += 1
        vm = v.vm
        vm.cell_vcpus[dest.cell] = vm.cell_vcpus.get(dest.cell, 0) + 1
        vm.visited_cells.add(dest.cell)
