"""Whole-VM migration between cells, and evacuating a cell (PAPER.md, Faults and recovery).

Moving a VM to other cells means copying its memory and I/O state: ``(memory_mb + io_state_mb)
/ migration_mb_per_s`` seconds (tens of seconds for GBs [S]; the bandwidth is [A]). The VM runs
on during the copy, depending on both its old and its new cells; then it stops for the final
switch (``migration_switch_ms``, charged to each VCPU as monitor overhead), its VCPUs move to
distinct CPUs of the new cells (the least loaded first) and from then on it depends only on the
new cells: its home cells, its monitor data and (without a memory manager) its memory. With
the memory manager attached, ``on_vm_migrated(vm, old_cells, new_cells)`` is sent to every hook
so the memory can follow.

``evacuate(cell)`` is the planned hot replacement: the cell takes no new VMs, every VM that
depends on it migrates off, and once none does the cell's CPUs go offline. A fault on the
cell afterwards loses no VM; with ``return_s`` the replaced cell comes back into service,
empty, that long after going offline. Without a monitor (``fixed_partition``) nothing can move: the
partition only drains, going offline once its jobs have finished (if they do within the
re-checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from disco.vmm.state import DONE, RUNNABLE, RUNNING, VM

if TYPE_CHECKING:
    from disco.vmm.monitor import Monitor
    from disco.vmm.recovery import Recovery

_EVACUATION_PASSES = 8  # re-check for VMs that came to depend on the cell meanwhile


class VMMigrator:
    def __init__(self, mon: Monitor, recovery: Recovery) -> None:
        f = mon.cfg.faults
        self.mon = mon
        self.recovery = recovery
        self.bandwidth = f.migration_mb_per_s
        self.io_state_mb = f.io_state_mb
        self.switch_s = f.migration_switch_ms * 1e-3
        self.in_flight: dict[int, tuple[int, ...]] = {}  # VM id -> destination cells
        # VM id -> its monitor-data entries for those cells before the copy (None: absent)
        self._saved: dict[int, dict[int, float | None]] = {}
        self.completed = 0
        self.aborted = 0

    def copy_time(self, vm: VM) -> float:
        return (vm.memory_mb + self.io_state_mb) / self.bandwidth

    def migrate(self, vm: VM, cells: tuple[int, ...] | range | None = None) -> bool:
        """Start moving ``vm`` to ``cells`` (None: the best live cells other than its own)."""
        mon = self.mon
        if vm.status != "running" or vm.id in self.in_flight or not mon.policy.cross_cell_moves:
            return False  # fixed partitions have no monitor to move a running OS
        if cells is None:
            cells = self._choose(vm)
            if cells is None:
                return False
        cells = tuple(cells)
        self.in_flight[vm.id] = cells
        data = self.recovery.data.setdefault(vm.id, {})
        self._saved[vm.id] = {c: data.get(c) for c in cells}
        for c in cells:  # the copy lands there: the VM depends on them from now on
            data[c] = float("inf")
        mon.loop.schedule(self.copy_time(vm), self._switch, vm)
        return True

    def _choose(self, vm: VM) -> range | None:
        mon = self.mon
        own = set(vm.cell_vcpus) | set(vm.home_cells)
        m = mon.machine
        k = -(-len(vm.vcpus) // m.cpus_per_cell)
        live = mon.cell_live
        starts = [s for s in range(m.cells - k + 1)
                  if all(live[s:s + k]) and not own.intersection(range(s, s + k))]
        if not starts:
            return None
        start = min(starts, key=lambda s: (sum(mon.cell_assigned[s:s + k]), s))
        return range(start, start + k)

    def _switch(self, vm: VM) -> None:
        rec = self.recovery
        if rec.paused_at is not None:  # the machine is wedged in recovery: switch after it
            rec.after_resume.append((self._switch, (vm,)))
            return
        cells = self.in_flight.pop(vm.id)
        saved = self._saved.pop(vm.id)
        if vm.status != "running":
            return
        if not all(self.mon.cell_live[c] for c in cells):
            self._abort(vm, saved)
            return
        mon = self.mon
        gang = mon.gang
        freed = []
        if mon.gang_on:
            if vm.running:
                freed = gang.deschedule(vm, kick=False)
        else:
            for v in vm.vcpus:
                if v.state == RUNNING:
                    cpu = mon.cpus[v.cpu]
                    mon.loop.cancel(cpu.slice_event)
                    cpu.slice_event = None
                    freed.append(mon.stop(v, RUNNABLE))
        m = mon.machine
        # A VCPU already in the new cells (a balancer moved it there meanwhile) stays put.
        movers = [v for v in vm.vcpus if v.state != DONE and mon.cpus[v.cpu].cell not in cells]
        kept = {v.cpu for v in vm.vcpus if v.state != DONE and v not in movers}
        targets = [mon.cpus[i] for c in cells for i in m.cell_cpus(c) if i not in kept]
        targets.sort(key=lambda c: (c.load, len(c.queue), c.index))
        if len(targets) < len(movers):
            for cpu in freed:
                gang.kick(cpu)
            self._abort(vm, saved)
            return
        old_cells = vm.home_cells
        cost = mon.migrator.cost
        for v, dst in zip(movers, targets, strict=False):
            v.debt += self.switch_s
            if v.state == RUNNABLE:
                mon.migrator.migrate(v, dst)
            else:  # blocked or guest-idle: it moves without counting as load
                src = mon.cpus[v.cpu]
                mon.remove_from_queue(v)
                v.cpu = dst.index
                mon.migrator.enqueue(v, dst)
                v.debt += cost[m.distance(src.index, dst.index)]
                mon.notify("on_vcpu_moved", v, src, dst)
        vm.home_cells = tuple(cells)
        home_node = m.cell_nodes(cells[0])[0]
        others = sorted((c for c in range(m.cells) if c not in cells),
                        key=lambda c: (m.hops(home_node, m.cell_nodes(c)[0]), c))
        vm.pref_cells = vm.home_cells + tuple(others)
        rec.data[vm.id] = {c: float("inf") for c in cells}
        self.completed += 1
        mon.notify("on_vm_migrated", vm, old_cells, vm.home_cells)
        for cpu in freed:
            gang.kick(cpu)
        for v in movers:
            if v.state == RUNNABLE:
                gang.ensure_slice_on(mon.cpus[v.cpu])

    def _abort(self, vm: VM, saved: dict[int, float | None]) -> None:
        """The move cannot finish (a destination went away): the partial copy is dropped, so
        the VM no longer depends on the destination cells through it."""
        data = self.recovery.data.setdefault(vm.id, {})
        for c, old in saved.items():
            if old is None:
                data.pop(c, None)
            else:
                data[c] = old
        self.aborted += 1

    # -- evacuation ----------------------------------------------------------------------
    def evacuate(self, cell: int, passes: int = _EVACUATION_PASSES) -> None:
        """Move every VM off ``cell``, then take it offline (planned hot replacement)."""
        rec = self.recovery
        from disco.vmm.recovery import EVACUATING, LIVE

        if rec.cell_state[cell] not in (LIVE, EVACUATING):
            return
        if not any(live for c, live in enumerate(self.mon.cell_live) if c != cell):
            return  # nowhere to go (e.g. a one-cell machine): the cell stays in service
        rec.cell_state[cell] = EVACUATING
        self.mon.cell_live[cell] = False
        waiting = [vm for vm in rec.dependents([cell])]
        if not waiting:
            rec.take_offline(cell)
            return
        for vm in waiting:
            if vm.id not in self.in_flight:
                self.migrate(vm)
        longest = max((self.copy_time(vm) for vm in waiting), default=0.0)
        if passes > 0:
            self.mon.loop.schedule(longest + self.switch_s + 1e-3, self._evacuate_again, cell,
                                   passes - 1)

    def _evacuate_again(self, cell: int, passes: int) -> None:
        from disco.vmm.recovery import EVACUATING

        rec = self.recovery
        if rec.cell_state[cell] != EVACUATING:
            return
        if rec.paused_at is not None:
            rec.after_resume.append((self._evacuate_again, (cell, passes)))
            return
        left = rec.dependents([cell])
        if not left:
            rec.take_offline(cell)
            return
        if passes <= 0:
            return  # some VM cannot move: the cell stays up (taking no new VMs)
        for vm in left:
            if vm.id not in self.in_flight:
                self.migrate(vm)
        longest = max((self.copy_time(vm) for vm in left), default=0.0)
        self.mon.loop.schedule(longest + self.switch_s + 1e-3, self._evacuate_again, cell,
                               passes - 1)
