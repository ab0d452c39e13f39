"""The periodic balancer (PAPER.md, CPU management).

Every ``periodic_period_ms`` it walks the load tree from the root. Where the load of the two
halves under a tree node differs by more than ``periodic_threshold`` VCPUs (per-CPU averages,
so uneven halves compare fairly), it moves one waiting VCPU from the heaviest CPU of the heavy
half to the lightest CPU of the light half. The target CPU must not already hold a VCPU of the
same VM; a move that would spread a VM onto a cell it does not use yet is taken only when no
other candidate exists and ``allow_cell_split`` is on (fault containment first).
"""

from __future__ import annotations

from disco.engine import EventLoop
from disco.hardware import OTHER_CELL, Machine
from disco.vmm.gang import GangScheduler
from disco.vmm.reporting import Report
from disco.vmm.state import CPU, RUNNABLE, VCPU, MonitorState
from disco.vmm.trace_hooks import NO_TRACE, TraceHooks
from disco.vmm.vcpu_migration import VcpuMigrator


class PeriodicBalancer:
    def __init__(self, loop: EventLoop, machine: Machine, state: MonitorState,
                 migrator: VcpuMigrator, gang: GangScheduler, period_s: float, threshold: float,
                 allow_split: bool, cross_cell: bool) -> None:
        self.loop = loop
        self.machine = machine
        self.state = state
        self.migrator = migrator
        self.gang = gang
        self.period = period_s
        self.half_threshold = threshold / 2.0
        self.allow_split = allow_split
        self.cross_cell = cross_cell
        self.moves = 0
        self.trace: TraceHooks = NO_TRACE  # runner.build sets a tracer when tracing

    def start(self) -> None:
        self.loop.schedule(self.period, self.tick)

    def report(self, out: Report) -> None:
        out.metrics["balancer_moves_periodic"] = self.moves

    def tick(self) -> None:
        state = self.state
        tree = state.tree
        tree.refresh([cpu.load for cpu in state.cpus])
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
        self.loop.schedule(self.period, self.tick)

    def _move(self, heavy_node: int, light_node: int) -> bool:
        state = self.state
        tree = state.tree
        src = state.cpus[tree.heaviest(heavy_node)]
        dst = state.cpus[tree.lightest(light_node)]
        if src.load - dst.load < 2 or not src.waiting or not dst.online:
            return False
        v = self._pick(src, dst)
        if v is None:
            return False
        self.migrator.migrate(v, dst)
        tree.set_load(src.index, src.load)
        tree.set_load(dst.index, dst.load)
        self.moves += 1
        self.trace.periodic_move(v, dst)
        self.gang.ensure_slice_on(dst)
        return True

    def _pick(self, src: CPU, dst: CPU) -> VCPU | None:
        cross = self.machine.distance(src.index, dst.index) == OTHER_CELL
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
