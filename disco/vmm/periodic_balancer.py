"""The periodic balancer (PAPER.md, CPU management).

Every ``periodic_period_ms`` it walks the load tree from the root. Where the load of the two
halves under a tree node differs by more than ``periodic_threshold`` VCPUs (per-CPU averages,
so uneven halves compare fairly), it moves one waiting VCPU from the heaviest CPU of the heavy
half to the lightest CPU of the light half. The target CPU must not already hold a VCPU of the
same VM; a move that would spread a VM onto a cell it does not use yet is taken only when no
other candidate exists and ``allow_cell_split`` is on (fault containment first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from disco.hardware import OTHER_CELL
from disco.vmm.state import CPU, RUNNABLE, VCPU

if TYPE_CHECKING:
    from disco.vmm.monitor import Monitor


class PeriodicBalancer:
    def __init__(self, mon: Monitor) -> None:
        p = mon.cfg.policy
        self.mon = mon
        self.period = p.periodic_period_ms * 1e-3
        self.half_threshold = p.periodic_threshold / 2.0
        self.allow_split = p.allow_cell_split
        self.cross_cell = mon.policy.cross_cell_moves
        mon.loop.schedule(self.period, self.tick)

    def tick(self) -> None:
        tree = self.mon.tree
        tree.refresh([cpu.load for cpu in self.mon.cpus])
        s, size, left, right = tree.sum, tree.size, tree.left, tree.right
        for node in tree.internal:
            a, b = left[node], right[node]
            na, nb = size[a], size[b]
            if not na or not nb:  # one side has only failed CPUs (faults): nothing to balance
                continue
            excess = (s[a] * nb - s[b] * na) / (na + nb)
            if excess > self.half_threshold:
                self._move(a, b)
            elif -excess > self.half_threshold:
                self._move(b, a)
        self.mon.loop.schedule(self.period, self.tick)

    def _move(self, heavy_node: int, light_node: int) -> bool:
        mon = self.mon
        tree = mon.tree
        src = mon.cpus[tree.heaviest(heavy_node)]
        dst = mon.cpus[tree.lightest(light_node)]
        if src.load - dst.load < 2 or not src.waiting or not dst.online:
            return False
        v = self._pick(src, dst)
        if v is None:
            return False
        mon.migrator.migrate(v, dst)
        tree.set_load(src.index, src.load)
        tree.set_load(dst.index, dst.load)
        mon.counters["balancer_moves_periodic"] += 1
        mon.gang.ensure_slice_on(dst)
        return True

    def _pick(self, src: CPU, dst: CPU) -> VCPU | None:
        cross = self.mon.machine.distance(src.index, dst.index) == OTHER_CELL
        if cross and not self.cross_cell:
            return None
        best: VCPU | None = None
        best_key: tuple = ()
        for v in src.queue:
            if v.state != RUNNABLE or any(u.vm is v.vm for u in dst.queue):
                continue
            splits = cross and dst.cell not in v.vm.cell_vcpus
            if splits and not self.allow_split:
                continue
            key = (splits, len(v.vm.vcpus), v.vm.wait_since, v.vm.id, v.index)
            if best is None or key < best_key:
                best, best_key = v, key
        return best
