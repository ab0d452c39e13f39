"""The containment rule: which running VMs depend on which cells (PAPER.md, Structure).

A running VM depends on a cell if it has a VCPU queued there (``vm.cell_vcpus``), memory
there (its own or borrowed: the ``MemoryFootprint``, ``guest_memory.py``), or its monitor data
there: the home cells always, and a cell a VCPU left for another cell until the data follows
(``faults.data_follow_s``, 1 s [A]; null: never, so the VM depends on every cell its VCPUs
visited). A whole-VM migration (``vm_migration.py``) moves everything: while its memory is
copied the VM depends only on its source (a pre-copy; with ``faults.migration_copy_dependency``
on the destination too), and afterwards only on the new cells.

A VM tied to a failed cell by memory alone may die lazily (``recovery.py``): how soon it touches
a lost line depends on the share of its memory that was there (``lost_share``).

Recovery applies the rule at the instant of a fault and again once the machine-wide part of
recovery is over (``recovery.py``).
"""

from __future__ import annotations

from typing import Protocol

from disco.engine import EventLoop
from disco.vmm.state import CPU, INF, VCPU, VM, MonitorState


class MemoryFootprint(Protocol):
    def memory_cells(self, vm: VM) -> set[int]:
        """Cells holding ``vm``'s memory (its own or borrowed), and its home cells."""
        ...

    def lost_share(self, vm: VM, cells: list[int]) -> float:
        """The share of ``vm``'s resident memory (with its shared region) on ``cells``."""
        ...


class Containment:
    def __init__(self, loop: EventLoop, state: MonitorState, memory: MemoryFootprint,
                 data_follow_s: float | None) -> None:
        self.loop = loop
        self.state = state
        self.memory = memory
        self.follow = INF if data_follow_s is None else data_follow_s
        # VM id -> cell -> when its monitor data there is gone (INF: it stays).
        self.data: dict[int, dict[int, float]] = {}

    # -- following the VMs (bus) -------------------------------------------------------------
    def on_vm_arrived(self, vm: VM) -> None:
        self.data[vm.id] = {c: INF for c in vm.home_cells}

    def on_vcpu_moved(self, v: VCPU, src: CPU, dst: CPU) -> None:
        if src.cell == dst.cell:
            return
        data = self.data[v.vm.id]
        until = self.loop.now + self.follow
        if data.get(src.cell, 0.0) < until:
            data[src.cell] = until

    # -- whole-VM migration --------------------------------------------------------------------
    def copy_started(self, vm: VM, cells: tuple[int, ...]) -> dict[int, float | None]:
        """``vm``'s memory is being copied to ``cells``: it depends on them from now on.
        Returns what its data entries for them were (None: absent), for ``copy_dropped``."""
        data = self.data.setdefault(vm.id, {})
        saved = {c: data.get(c) for c in cells}
        for c in cells:
            data[c] = INF
        return saved

    def copy_dropped(self, vm: VM, saved: dict[int, float | None]) -> None:
        """The copy was abandoned: the VM no longer depends on its destination through it."""
        data = self.data.setdefault(vm.id, {})
        for c, old in saved.items():
            if old is None:
                data.pop(c, None)
            else:
                data[c] = old

    def moved(self, vm: VM, cells: tuple[int, ...]) -> None:
        """The migration switched ``vm`` to ``cells``: its monitor data lives there only."""
        self.data[vm.id] = {c: INF for c in cells}

    # -- the rule ------------------------------------------------------------------------------
    def dependency(self, vm: VM, cells: list[int]) -> str | None:
        """Why ``vm`` depends on any of ``cells``: "vcpu", "data", "memory", or None."""
        if any(c in vm.cell_vcpus for c in cells):
            return "vcpu"
        data = self.data.get(vm.id, {})
        now = self.loop.now
        if any(data.get(c, 0.0) > now for c in cells):
            return "data"
        mem = self.memory.memory_cells(vm)
        if any(c in mem for c in cells):
            return "memory"
        return None

    def lost_share(self, vm: VM, cells: list[int]) -> float:
        """The share of ``vm``'s memory on ``cells`` (asked before their memory is gone)."""
        return self.memory.lost_share(vm, cells)

    def dependents(self, cells: list[int]) -> list[VM]:
        """Running VMs that depend on any of ``cells``, by id (O(VMs): recovery only)."""
        return [vm for vm in self.state.vms
                if vm.status == "running" and self.dependency(vm, cells) is not None]
