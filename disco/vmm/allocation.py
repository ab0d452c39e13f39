"""Where a touched chunk's frame comes from, and what waiting for it costs (PAPER.md, Memory).

First touch: a new private chunk goes on the node of the VCPU that owns it (its working set's
VCPU, ``GuestMemory.owner``) if that node's cell is a home cell, else on the home cells'
nearest node. A home cell whose own free memory falls below the borrowing trigger (or runs
out: borrowing on demand) drops its NUMA replicas, then borrows (``borrowing.py``); when the
home cells are exhausted the chunk goes on borrowed memory; when every cell is short, the pager
frees memory (``paging.py``).

**Memory waits cost time** by stalling the VCPU that needs the memory until a given time
(``wait``): the disk finishing the writes that free its frame, and the read of a paged-out
chunk (``paging_stall_s``); a loan in flight arriving (``loan_wait_s``); or, when nothing can
be freed (paging off, or nothing evictable), the next memory tick, when the allocation is
retried, again and again until memory frees (``memory_wait_s``; ``memory_alloc_failures``
counts the attempts that found no frame). A running VCPU holds its CPU (debt, monitor
overhead); one off its CPU cannot progress before that time (``Execution.stall``). Waits
overlap: a VCPU already waiting until ``u`` that waits again until ``t`` is charged
``t - max(now, u)`` more, not ``t - now``, so several requests queued on one disk cost it the
wait for the last one, not the sum of their waits.

A memory tick's allocations are spread over the tick (``offset``: the i-th of k at ``i * tick
/ k``): the guest's demand is continuous, so a loan asked for by the first may arrive before
the next is made.
"""

from __future__ import annotations

from typing import Final

from disco.engine import EventLoop
from disco.vmm.borrowing import Borrowing
from disco.vmm.disk import Disks
from disco.vmm.execution import Execution
from disco.vmm.frames import FrameStore
from disco.vmm.guest_memory import (
    EMPTY,
    ON_DISK,
    RESIDENT,
    GuestMemory,
    SharedRegion,
    VMMemory,
)
from disco.vmm.numa import NumaPolicy
from disco.vmm.paging import Pager
from disco.vmm.reporting import Report
from disco.vmm.state import DONE, LOST, VCPU, VM

PAGE_BATCH: Final = 4  # [A] chunks the pager frees at once
# What a VCPU waits for (``wait``).
DISK: Final = 0
LOAN: Final = 1
SHORTAGE: Final = 2


class MemoryWaits:
    """The waits for memory of every VCPU (the module docstring), by kind, overlapping."""

    def __init__(self, loop: EventLoop, execution: Execution) -> None:
        self.loop = loop
        self.execution = execution
        self.waited = [0.0, 0.0, 0.0]  # seconds waited, by DISK / LOAN / SHORTAGE
        self.until: dict[tuple[int, int], float] = {}  # (VM id, VCPU index) -> wait end

    def report(self, out: Report) -> None:
        out.metrics["paging_stall_s"] = self.waited[DISK]
        out.metrics["loan_wait_s"] = self.waited[LOAN]
        out.metrics["memory_wait_s"] = self.waited[SHORTAGE]

    def wait(self, v: VCPU, until: float, kind: int) -> None:
        """``v`` cannot progress before ``until`` (``kind``: DISK, LOAN or SHORTAGE). Waits
        overlap: a VCPU already waiting until ``u`` is charged ``until - max(now, u)`` more."""
        if v.state == DONE or v.state == LOST:
            return
        now = self.loop.now
        key = (v.vm.id, v.index)
        start = max(now, self.until.get(key, now))
        if until <= start:
            return
        self.until[key] = until
        add = until - start
        self.waited[kind] += add
        self.execution.stall(v, add, until)

    def forget(self, vm: VM) -> None:
        """``vm`` ended: its waits are over."""
        for v in vm.vcpus:
            self.until.pop((vm.id, v.index), None)


class Allocator:
    def __init__(self, loop: EventLoop, frames: FrameStore, guest: GuestMemory,
                 borrowing: Borrowing, numa: NumaPolicy, pager: Pager, disks: Disks,
                 waits: MemoryWaits, tick_s: float) -> None:
        self.loop = loop
        self.frames = frames
        self.guest = guest
        self.borrowing = borrowing
        self.numa = numa
        self.pager = pager
        self.disks = disks
        self.waits = waits
        self.tick_s = tick_s  # a VCPU short of memory waits for the next tick's retry
        self.chunk_mb = frames.chunk_mb
        self.alloc_failures = 0

    def report(self, out: Report) -> None:
        out.metrics["memory_alloc_failures"] = self.alloc_failures

    # -- frames ------------------------------------------------------------------------------
    def take(self, r: VMMemory, near: int, at: float) -> int:
        """A frame for VM ``r`` touched from node ``near`` at time ``at``: home cells, then
        borrowed; -1. ``borrowing.ready_at`` says when a borrowed one can be used."""
        frames = self.frames
        self.borrowing.ready_at = 0.0
        home = r.vm.home_cells
        cells = home
        near_cell = frames.cell_of_node[near]
        if near_cell in home and home[0] != near_cell:
            cells = (near_cell,) + tuple(c for c in home if c != near_cell)
        trigger = self.borrowing.trigger
        for cell in cells:
            if not frames.cell_online[cell]:
                continue
            f = frames.pop(cell, cell, near if near_cell == cell else frames.first_node(cell))
            if f >= 0:
                if frames.cell_free[cell] < trigger:
                    self.short(cell, r, at)
                return f
        for cell in cells:
            self.short(cell, r, at)
            # Dropping its replicas may have given the cell frames of its own.
            if frames.cell_online[cell] and frames.cell_free[cell] > 0:
                f = frames.pop(cell, cell, near if near_cell == cell
                               else frames.first_node(cell))
                if f >= 0:
                    return f
        return self.borrowing.take(r, near, at)

    def short(self, cell: int, r: VMMemory, at: float) -> None:
        """``cell``'s own free fell below the trigger, or ran out: drop replicas, then
        borrow."""
        cell_free, trigger = self.frames.cell_free, self.borrowing.trigger
        if cell_free[cell] < trigger or cell_free[cell] == 0:
            self.numa.drop_replicas(cell)
        if cell_free[cell] < trigger or cell_free[cell] == 0:
            self.borrowing.replenish(cell, r, at)

    def get_frame(self, r: VMMemory, near: int, v: VCPU | None, offset: float = 0.0) -> int:
        """``take`` for an allocation ``offset`` into the tick, paging if every cell is
        short; ``v`` waits for the pager's writes or for a loan in flight."""
        now = self.loop.now
        at = now + offset
        f = self.take(r, near, at)
        if f < 0:
            until = self.pager.make_room(r, PAGE_BATCH)
            if until >= 0.0:
                if v is not None:
                    self.waits.wait(v, until, DISK)
                f = self.take(r, near, at)
        if f < 0:
            self.alloc_failures += 1
        else:
            ready = self.borrowing.ready_at
            if v is not None and ready > at:
                self.waits.wait(v, ready - offset, LOAN)
        return f

    # -- waiting -----------------------------------------------------------------------------
    def short_wait(self, r: VMMemory, lo: int, hi: int) -> None:
        """No frame for private chunks ``[lo, hi)`` (nothing could be freed): their owners
        wait for the next memory tick, when the allocation is retried (once each)."""
        until = self.loop.now + self.tick_s
        for j in range(lo, min(hi, lo + r.nv)):  # one chunk of each VCPU's is enough
            v = self.guest.owner(r, j)
            if v is not None:
                self.waits.wait(v, until, SHORTAGE)  # a repeat costs nothing: waits overlap

    # -- touching ----------------------------------------------------------------------------
    def touch(self, r: VMMemory, j: int, v: VCPU | None = None, offset: float = 0.0) -> bool:
        """First touch (or reuse after a drop) of private chunk ``j``, by its owner VCPU."""
        guest = self.guest
        if v is None:
            v = guest.owner(r, j)
        f = self.get_frame(r, guest.node_of(r, v), v, offset)
        if f < 0:
            return False
        guest.map_private(r, j, f)
        r.ref[j] = 1
        return True

    def page_in(self, r: VMMemory, j: int, v: VCPU | None = None) -> bool:
        """Chunk ``j`` is on disk and touched: read it into a new frame; its VCPU waits."""
        guest = self.guest
        if v is None:
            v = guest.owner(r, j)
        f = self.get_frame(r, guest.node_of(r, v), v)
        if f < 0:
            return False
        disks = self.disks
        until = disks.request(disks.disk_of(r.vm.id), self.loop.now, self.chunk_mb, write=False)
        self.pager.pages_in += 1
        r.on_disk -= 1
        guest.map_private(r, j, f)
        r.ref[j] = 1
        if v is not None:
            self.waits.wait(v, until, DISK)
        return True

    def shared_in(self, r: VMMemory, reg: SharedRegion, i: int, v: VCPU | None = None) -> bool:
        """Region chunk ``i`` is touched: map it (reading it back if it is on disk)."""
        guest = self.guest
        if v is None:
            v = guest.toucher(r)
        f = self.get_frame(r, guest.node_of(r, v), v)
        if f < 0:
            if v is not None:  # nothing to map it in: it waits for the next tick's retry
                self.waits.wait(v, self.loop.now + self.tick_s, SHORTAGE)
            return False
        if reg.state[i] == ON_DISK:
            disks = self.disks
            until = disks.request(disks.disk_of(r.vm.id), self.loop.now, self.chunk_mb,
                                  write=False)
            self.pager.pages_in += 1
            reg.on_disk -= 1
            if v is not None:
                self.waits.wait(v, until, DISK)
        guest.map_shared(reg, i, f)
        return True

    def attach_region(self, r: VMMemory, n: int) -> None:
        """``r`` maps its shared region (``n`` chunks), touching what is not resident."""
        reg = self.guest.join_region(r, n)
        for i in range(reg.n):
            if reg.state[i] != RESIDENT and not self.shared_in(r, reg, i):
                break
        self.guest.region_changed(reg)

    def fill_region(self, r: VMMemory) -> None:
        """Map the region chunks that are in no frame and not on disk (a shortage left them
        unmapped at arrival): retried every tick until they fit."""
        reg = r.region
        assert reg is not None
        for i in range(reg.n):
            if reg.state[i] == EMPTY and not self.shared_in(r, reg, i):
                break

    def region_missing(self, r: VMMemory) -> bool:
        reg = r.region
        return reg is not None and reg.resident + reg.on_disk < reg.n
