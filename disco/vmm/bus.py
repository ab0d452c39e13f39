"""The typed event bus: the lifecycle events the mechanisms share.

A mechanism that must follow what happens to VMs and cells (memory, fault containment,
recovery, placement) subscribes here in ``runner.build``; the mechanism where the event happens
emits it, knowing nothing of who listens. Subscribers run in the order they subscribed, which
``runner.build`` fixes: the order is part of a run's result (a subscriber may schedule events,
and same-time events run in the order they were scheduled).

The events:

- ``vm_arrived(vm)``: placed, its VCPUs queued on their CPUs (``placement.py``);
- ``vcpu_moved(v, src, dst)``: a VCPU changed run queue (``vcpu_migration.py``);
- ``vm_exited(vm)``: finished or killed after it had arrived (``execution.py``);
- ``vm_migrated(vm, old_cells, new_cells)``: a whole-VM migration switched it to new home
  cells (``vm_migration.py``);
- ``cell_failed(cell)``: a cell left service, failed or taken offline after its evacuation,
  once per outage; its memory is gone from that instant (``cell_lifecycle.py``);
- ``cell_repaired(cell)``: a failed or evacuated cell is back, empty, its CPUs online;
- ``disk_request(disk, time, mb, write)``: a paging disk was given a transfer (``disk.py``);
  no mechanism needs it: it is there for observers (tests, traces).

Subscribers that only observe (tests, traces) must not schedule events or draw random numbers,
or the run they watch is no longer the run without them. The hot path (VCPU start, stop,
accounting, rescheduling) never goes through the bus: those are direct calls.
"""

from __future__ import annotations

from collections.abc import Callable

from disco.vmm.state import CPU, VCPU, VM


class Bus:
    __slots__ = ("_vm_arrived", "_vcpu_moved", "_vm_exited", "_vm_migrated", "_cell_failed",
                 "_cell_repaired", "_disk_request")

    def __init__(self) -> None:
        self._vm_arrived: list[Callable[[VM], None]] = []
        self._vcpu_moved: list[Callable[[VCPU, CPU, CPU], None]] = []
        self._vm_exited: list[Callable[[VM], None]] = []
        self._vm_migrated: list[Callable[[VM, tuple[int, ...], tuple[int, ...]], None]] = []
        self._cell_failed: list[Callable[[int], None]] = []
        self._cell_repaired: list[Callable[[int], None]] = []
        self._disk_request: list[Callable[[int, float, float, bool], None]] = []

    # -- subscribing ----------------------------------------------------------------------
    def on_vm_arrived(self, fn: Callable[[VM], None]) -> None:
        self._vm_arrived.append(fn)

    def on_vcpu_moved(self, fn: Callable[[VCPU, CPU, CPU], None]) -> None:
        self._vcpu_moved.append(fn)

    def on_vm_exited(self, fn: Callable[[VM], None]) -> None:
        self._vm_exited.append(fn)

    def on_vm_migrated(self,
                       fn: Callable[[VM, tuple[int, ...], tuple[int, ...]], None]) -> None:
        self._vm_migrated.append(fn)

    def on_cell_failed(self, fn: Callable[[int], None]) -> None:
        self._cell_failed.append(fn)

    def on_cell_repaired(self, fn: Callable[[int], None]) -> None:
        self._cell_repaired.append(fn)

    def on_disk_request(self, fn: Callable[[int, float, float, bool], None]) -> None:
        self._disk_request.append(fn)

    # -- emitting -------------------------------------------------------------------------
    def vm_arrived(self, vm: VM) -> None:
        for fn in self._vm_arrived:
            fn(vm)

    def vcpu_moved(self, v: VCPU, src: CPU, dst: CPU) -> None:
        for fn in self._vcpu_moved:
            fn(v, src, dst)

    def vm_exited(self, vm: VM) -> None:
        for fn in self._vm_exited:
            fn(vm)

    def vm_migrated(self, vm: VM, old_cells: tuple[int, ...], new_cells: tuple[int, ...]) -> None:
        for fn in self._vm_migrated:
            fn(vm, old_cells, new_cells)

    def cell_failed(self, cell: int) -> None:
        for fn in self._cell_failed:
            fn(cell)

    def cell_repaired(self, cell: int) -> None:
        for fn in self._cell_repaired:
            fn(cell)

    def disk_request(self, disk: int, time: float, mb: float, write: bool) -> None:
        for fn in self._disk_request:
            fn(disk, time, mb, write)
