"""Whole-VM migration between cells, and evacuating a cell (PAPER.md, Faults and recovery).

Moving a VM to other cells means copying its memory and I/O state: ``(memory_mb + io_state_mb)
/ migration_mb_per_s`` seconds (tens of seconds for GBs [S]; the bandwidth is [A]). The VM runs
on during the copy. It is a pre-copy: the source cells hold the VM's whole state until the
switch, so a fault on a destination cell only aborts the copy and the VM stays where it was
(``faults.migration_copy_dependency=false`` [A]; true: the VM depends on its destination from
the start of the copy, and such a fault kills it). Then it stops for the final switch
(``migration_switch_ms``, charged to each VCPU as monitor overhead), its VCPUs move to distinct
CPUs of the new cells (the least loaded first) and from then on it depends only on the new
cells: its home cells and its monitor data; ``bus.vm_migrated`` tells the memory to follow
(what cannot move stays a dependency). The periodic balancer moves and swaps whole VMs this way
(``periodic_balancer.py``).

``evacuate(cell)`` is the planned hot replacement: the cell takes no new VMs, every VM that
depends on it migrates off, and once none does the cell's CPUs go offline. A fault on the
cell afterwards loses no VM; with ``return_s`` the replaced cell comes back into service,
empty, that long after going offline. A system whose VMs cannot move across cells
(``Policy.cross_cell_moves`` false: fixed partitions have no monitor to move a running OS) only
drains, going offline once its jobs have finished (if they do within the re-checks).
"""

from __future__ import annotations

from disco.config import EvacuateCell, FaultsConfig
from disco.engine import EventLoop
from disco.hardware import Machine
from disco.vmm.bus import Bus
from disco.vmm.cell_lifecycle import EVACUATING, LIVE, CellLifecycle
from disco.vmm.containment import Containment
from disco.vmm.gang import GangScheduler
from disco.vmm.placement import set_home
from disco.vmm.reporting import Report
from disco.vmm.state import DONE, RUNNABLE, VM, MonitorState
from disco.vmm.vcpu_migration import VcpuMigrator

_EVACUATION_PASSES = 8  # re-check for VMs that came to depend on the cell meanwhile


class VMMigrator:
    def __init__(self, loop: EventLoop, machine: Machine, state: MonitorState, bus: Bus,
                 f: FaultsConfig, cross_cell_moves: bool, containment: Containment,
                 lifecycle: CellLifecycle, gang: GangScheduler, vcpus: VcpuMigrator) -> None:
        self.loop = loop
        self.machine = machine
        self.state = state
        self.bus = bus
        self.cross_cell_moves = cross_cell_moves
        self.containment = containment
        self.lifecycle = lifecycle
        self.gang = gang
        self.vcpus = vcpus
        self.bandwidth = f.migration_mb_per_s
        self.io_state_mb = f.io_state_mb
        self.switch_s = f.migration_switch_ms * 1e-3
        self.copy_dependency = f.migration_copy_dependency
        self.in_flight: dict[int, tuple[int, ...]] = {}  # VM id -> destination cells
        # VM id -> its monitor-data entries for those cells before the copy (None: absent)
        self._saved: dict[int, dict[int, float | None]] = {}
        self.returns: dict[int, float] = {}  # evacuated cell -> back in service after this
        self._doomed: set[int] = set()  # VM ids whose copy lost a destination cell
        self.completed = 0
        self.aborted = 0

    def start(self, evacuations: list[EvacuateCell], layout_nodes_per_cell: int) -> None:
        """Schedule the planned evacuations; each names a cell of the configured layout (the
        ``cells`` section, whatever the policy): the machine cell holding its first node."""
        m = self.machine
        for ev in evacuations:
            cell = m.cell_of_node(ev.cell * layout_nodes_per_cell)
            if ev.return_s is not None:
                self.returns[cell] = ev.return_s
            self.loop.at(ev.at_s, self.evacuate, cell)

    def report(self, out: Report) -> None:
        out.metrics.update({"vms_migrated": self.completed,
                            "vm_migrations_aborted": self.aborted})

    def copy_time(self, vm: VM) -> float:
        return (vm.memory_mb + self.io_state_mb) / self.bandwidth

    def migrate(self, vm: VM, cells: tuple[int, ...] | range | None = None) -> bool:
        """Start moving ``vm`` to ``cells`` (None: the best live cells other than its own)."""
        if vm.status != "running" or vm.id in self.in_flight or not self.cross_cell_moves:
            return False
        if cells is None:
            cells = self._choose(vm)
            if cells is None:
                return False
        cells = tuple(cells)
        self.in_flight[vm.id] = cells
        self._saved[vm.id] = (self.containment.copy_started(vm, cells)
                              if self.copy_dependency else {})
        self.loop.schedule(self.copy_time(vm), self._switch, vm)
        return True

    def _choose(self, vm: VM) -> range | None:
        state = self.state
        own = set(vm.cell_vcpus) | set(vm.home_cells)
        m = self.machine
        k = -(-len(vm.vcpus) // m.cpus_per_cell)
        live = state.cell_live
        starts = [s for s in range(m.cells - k + 1)
                  if all(live[s:s + k]) and not own.intersection(range(s, s + k))]
        if not starts:
            return None
        start = min(starts, key=lambda s: (sum(state.cell_assigned[s:s + k]), s))
        return range(start, start + k)

    def _switch(self, vm: VM) -> None:
        life = self.lifecycle
        if life.paused_at is not None:  # the machine is wedged in recovery: switch after it
            life.after_resume.append((self._switch, (vm,)))
            return
        cells = self.in_flight.pop(vm.id)
        saved = self._saved.pop(vm.id)
        if vm.status != "running":
            self._doomed.discard(vm.id)
            return
        state = self.state
        doomed = vm.id in self._doomed
        self._doomed.discard(vm.id)
        if doomed or not all(state.cell_live[c] for c in cells):
            self._abort(vm, saved)
            return
        gang = self.gang
        freed = gang.stop_vm(vm)
        m = self.machine
        cpus = state.cpus
        # A VCPU already in the new cells (a balancer moved it there meanwhile) stays put.
        movers = [v for v in vm.vcpus if v.state != DONE and cpus[v.cpu].cell not in cells]
        kept = {v.cpu for v in vm.vcpus if v.state != DONE and v not in movers}
        targets = [cpus[i] for c in cells for i in m.cell_cpus(c) if i not in kept]
        targets.sort(key=lambda c: (c.load, len(c.queue), c.index))
        if len(targets) < len(movers):
            for cpu in freed:
                gang.kick(cpu)
            self._abort(vm, saved)
            return
        old_cells = vm.home_cells
        for v, dst in zip(movers, targets, strict=False):
            v.debt += self.switch_s
            if v.state == RUNNABLE:
                self.vcpus.migrate(v, dst)
            else:  # blocked or guest-idle: it moves without counting as load
                self.vcpus.carry(v, dst)
        set_home(m, vm, cells)
        self.containment.moved(vm, cells)
        self.completed += 1
        self.bus.vm_migrated(vm, old_cells, vm.home_cells)
        for cpu in freed:
            gang.kick(cpu)
        for v in movers:
            if v.state == RUNNABLE:
                gang.ensure_slice_on(cpus[v.cpu], v)

    def on_cell_failed(self, cell: int) -> None:
        """A destination cell of a copy under way left service: the copy there is lost, and
        the move is abandoned at its switch (the VM stays on its source cells)."""
        for vm_id, cells in self.in_flight.items():
            if cell in cells:
                self._doomed.add(vm_id)

    def _abort(self, vm: VM, saved: dict[int, float | None]) -> None:
        """The move cannot finish (a destination went away): the partial copy is dropped, so
        the VM no longer depends on the destination cells through it."""
        self.containment.copy_dropped(vm, saved)
        self.aborted += 1

    # -- evacuation ----------------------------------------------------------------------
    def evacuate(self, cell: int, passes: int = _EVACUATION_PASSES) -> None:
        """Move every VM off ``cell``, then take it offline (planned hot replacement)."""
        life = self.lifecycle
        if life.cell_state[cell] not in (LIVE, EVACUATING):
            return
        if not any(live for c, live in enumerate(self.state.cell_live) if c != cell):
            return  # nowhere to go (e.g. a one-cell machine): the cell stays in service
        life.start_evacuation(cell)
        waiting = [vm for vm in self.containment.dependents([cell])]
        if not waiting:
            life.take_offline(cell, self.returns.pop(cell, None))
            return
        for vm in waiting:
            if vm.id not in self.in_flight:
                self.migrate(vm)
        longest = max((self.copy_time(vm) for vm in waiting), default=0.0)
        if passes > 0:
            self.loop.schedule(longest + self.switch_s + 1e-3, self._evacuate_again, cell,
                               passes - 1)

    def _evacuate_again(self, cell: int, passes: int) -> None:
        life = self.lifecycle
        if life.cell_state[cell] != EVACUATING:
            return
        if life.paused_at is not None:
            life.after_resume.append((self._evacuate_again, (cell, passes)))
            return
        left = self.containment.dependents([cell])
        if not left:
            life.take_offline(cell, self.returns.pop(cell, None))
            return
        if passes <= 0:
            return  # some VM cannot move: the cell stays up (taking no new VMs)
        for vm in left:
            if vm.id not in self.in_flight:
                self.migrate(vm)
        longest = max((self.copy_time(vm) for vm in left), default=0.0)
        self.loop.schedule(longest + self.switch_s + 1e-3, self._evacuate_again, cell,
                           passes - 1)
