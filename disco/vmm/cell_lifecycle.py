"""The cells' lifecycle: live, evacuating, evacuated, failed; and the machine-wide pause.

A cell is *live* until it fails (a hardware fault, ``recovery.py``) or is evacuated (planned
hot replacement, ``vm_migration.py``: *evacuating* while its VMs move off, then *evacuated*).
A failed or evacuated cell's CPUs stay offline and out of the load tree, and its memory leaves
the pool at once (``bus.cell_failed``); ``repair`` brings it back, empty (``bus.cell_repaired``).
``state.cell_live`` is True only for live cells: placement and migration never choose others.

During the machine-wide part of recovery every CPU is paused (``cpu.online = False``: the gang
scheduler and the balancers leave it alone) and VCPUs keep their queues; ``resume`` puts the
live and evacuating cells' CPUs back, and charges the pause to monitor overhead rather than
idleness. Work that must not happen while paused (a migration's switch) waits in
``after_resume``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from disco.engine import EventLoop
from disco.hardware import Machine
from disco.vmm.accounting import CpuAccounts
from disco.vmm.bus import Bus
from disco.vmm.gang import GangScheduler
from disco.vmm.state import MonitorState

LIVE: Final = "live"
EVACUATING: Final = "evacuating"
EVACUATED: Final = "evacuated"
FAILED: Final = "failed"


class CellLifecycle:
    def __init__(self, loop: EventLoop, machine: Machine, state: MonitorState,
                 acct: CpuAccounts, gang: GangScheduler, bus: Bus) -> None:
        self.loop = loop
        self.machine = machine
        self.state = state
        self.acct = acct
        self.gang = gang
        self.bus = bus
        self.cell_state = [LIVE] * machine.cells
        self.paused_at: float | None = None
        self.pause_total = 0.0
        self.after_resume: list[tuple[Callable[..., None], tuple]] = []

    def live_cells(self) -> int:
        """Cells not failed (evacuated ones still answer recovery's agreement rounds)."""
        return sum(1 for s in self.cell_state if s != FAILED)

    # -- the machine-wide pause ------------------------------------------------------------
    def pause(self) -> None:
        """Stop every CPU (recovery is O(machine)); VCPUs keep their queues."""
        if self.paused_at is not None:
            return
        self.paused_at = self.loop.now
        for cpu in self.state.cpus:
            self.gang.clear_cpu(cpu)
            cpu.online = False

    def resume(self) -> None:
        if self.paused_at is None:
            return
        now = self.loop.now
        span = now - self.paused_at
        self.pause_total += span
        self.paused_at = None
        cpus = self.state.cpus
        cell_cpus = self.machine.cell_cpus
        for cell, st in enumerate(self.cell_state):
            if st in (LIVE, EVACUATING):
                for i in cell_cpus(cell):
                    cpu = cpus[i]
                    # The pause was monitor work, not idleness: move it to overhead.
                    lost = min(span, now - cpu.idle_since)
                    self.acct.overhead[cell] += lost
                    cpu.idle_since += lost
                    cpu.online = True
        for cell, st in enumerate(self.cell_state):
            if st in (LIVE, EVACUATING):
                for i in cell_cpus(cell):
                    self.gang.kick(cpus[i])
        deferred, self.after_resume = self.after_resume, []
        for callback, args in deferred:
            callback(*args)

    def pause_so_far(self) -> float:
        """Time paused, the pause still under way included."""
        pause = self.pause_total
        if self.paused_at is not None:
            pause += self.loop.now - self.paused_at
        return pause

    # -- cells -----------------------------------------------------------------------------
    def fail(self, cell: int) -> None:
        """``cell`` failed: its CPUs stop and go offline. The failure is announced separately
        (``announce_failure``), once recovery has found the dependents from what was there."""
        prev = self.cell_state[cell]
        self.cell_state[cell] = FAILED
        self.state.cell_live[cell] = False
        tree = self.state.tree
        for i in self.machine.cell_cpus(cell):
            cpu = self.state.cpus[i]
            self.gang.clear_cpu(cpu)
            cpu.online = False
            if prev != EVACUATED:
                tree.set_online(i, False)

    def announce_failure(self, cell: int) -> None:
        """``cell``'s memory is gone from now on (``bus.cell_failed``)."""
        self.bus.cell_failed(cell)

    def start_evacuation(self, cell: int) -> None:
        """``cell`` takes no new VMs while its VMs move off."""
        self.cell_state[cell] = EVACUATING
        self.state.cell_live[cell] = False

    def take_offline(self, cell: int, back_after_s: float | None = None) -> None:
        """An evacuated cell: its memory leaves the pool and its CPUs stop (hot replacement);
        a fault there afterwards loses nothing. ``back_after_s``: it returns, empty, after
        that long (None: never)."""
        self.cell_state[cell] = EVACUATED
        self.state.cell_live[cell] = False
        self.bus.cell_failed(cell)
        tree = self.state.tree
        for i in self.machine.cell_cpus(cell):
            cpu = self.state.cpus[i]
            self.gang.clear_cpu(cpu)
            cpu.online = False
            tree.set_online(i, False)
        if back_after_s is not None:
            self.state.repairs_due += 1
            self.loop.schedule(back_after_s, self.repair, cell)

    def schedule_repair(self, cell: int, at: float) -> None:
        self.state.repairs_due += 1
        self.loop.at(at, self.repair, cell)

    def repair(self, cell: int) -> None:
        """A failed or evacuated cell comes back (replaced or rebooted): empty, live, its CPUs
        online unless the machine is paused."""
        state = self.state
        state.repairs_due -= 1
        if self.cell_state[cell] not in (FAILED, EVACUATED):
            return
        self.cell_state[cell] = LIVE
        state.cell_live[cell] = True
        for i in self.machine.cell_cpus(cell):
            cpu = state.cpus[i]
            state.tree.set_online(i, True)
            if self.paused_at is None:
                cpu.online = True
                self.gang.kick(cpu)
        self.bus.cell_repaired(cell)
