"""Where a touched chunk's frame comes from, and what waiting for it costs (PAPER.md, Memory).

First touch: a new chunk goes on the node of the touching VCPU (the VM's VCPUs take turns) if
that node's cell is a home cell, else on the home cells' nearest node. A home cell whose own
free memory falls below the borrowing trigger drops its NUMA replicas, then borrows
(``borrowing.py``); when the home cells are exhausted the chunk goes on borrowed memory; when
every cell is short, the pager frees memory (``paging.py``) and the VCPU waits for the disk.

**Paging costs time** by stalling: a VCPU that needs a frame being written out, or touches a
paged-out chunk, holds its CPU until the disk finishes (debt, charged as monitor overhead).
Waits overlap: a VCPU already waiting for the disk until ``u`` that waits again until ``t``
is charged ``t - max(now, u)`` more, not ``t - now`` (``disk_wait``); ``paging_stall_s`` sums
those charges.
"""

from __future__ import annotations

from typing import Final

from disco.engine import EventLoop
from disco.vmm.borrowing import Borrowing
from disco.vmm.disk import Disks
from disco.vmm.execution import Execution
from disco.vmm.frames import FrameStore
from disco.vmm.guest_memory import ON_DISK, RESIDENT, GuestMemory, SharedRegion, VMMemory
from disco.vmm.numa import NumaPolicy
from disco.vmm.paging import Pager
from disco.vmm.reporting import Report
from disco.vmm.state import VCPU

PAGE_BATCH: Final = 4  # [A] chunks the pager frees at once


class Allocator:
    def __init__(self, loop: EventLoop, frames: FrameStore, guest: GuestMemory,
                 borrowing: Borrowing, numa: NumaPolicy, pager: Pager, disks: Disks,
                 execution: Execution) -> None:
        self.loop = loop
        self.frames = frames
        self.guest = guest
        self.borrowing = borrowing
        self.numa = numa
        self.pager = pager
        self.disks = disks
        self.execution = execution
        self.chunk_mb = frames.chunk_mb
        self.alloc_failures = 0
        self.stall_s = 0.0
        self.io_until: dict[tuple[int, int], float] = {}  # (VM id, VCPU index) -> disk wait end

    def report(self, out: Report) -> None:
        out.metrics["paging_stall_s"] = self.stall_s
        out.metrics["memory_alloc_failures"] = self.alloc_failures

    # -- frames ------------------------------------------------------------------------------
    def take(self, r: VMMemory, near: int) -> int:
        """A frame for VM ``r`` touched from node ``near``: home cells, then borrowed; -1."""
        frames = self.frames
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
                    self.short(cell, r)
                return f
        for cell in cells:
            self.short(cell, r)
        return self.borrowing.take(r, near)

    def short(self, cell: int, r: VMMemory) -> None:
        """``cell``'s own free fell below the trigger: drop replicas, then borrow."""
        cell_free, trigger = self.frames.cell_free, self.borrowing.trigger
        if cell_free[cell] < trigger:
            self.numa.drop_replicas(cell)
        if cell_free[cell] < trigger:
            self.borrowing.replenish(cell, r)

    def get_frame(self, r: VMMemory, near: int) -> int:
        """``take``, paging if every cell is short; the wait for the disk is charged."""
        f = self.take(r, near)
        if f < 0:
            until = self.pager.make_room(r, PAGE_BATCH)
            if until >= 0.0:
                self.stall(r, until)
                f = self.take(r, near)
        if f < 0:
            self.alloc_failures += 1
        return f

    # -- waiting for the disk ----------------------------------------------------------------
    def disk_wait(self, v: VCPU, until: float) -> None:
        """``v`` holds its CPU until the disk finishes at ``until``. Waits overlap: a VCPU
        already waiting for an I/O ending at ``u`` is charged only ``until - max(now, u)``
        more, so several requests queued on one disk cost it the wait for the last one,
        not the sum of their waits (``paging_stall_s`` counts the same)."""
        now = self.loop.now
        key = (v.vm.id, v.index)
        start = max(now, self.io_until.get(key, now))
        if until > start:
            self.io_until[key] = until
            self.stall_s += until - start
            self.execution.charge(v, until - start)

    def stall(self, r: VMMemory, until: float) -> None:
        """The VM's touching VCPU stalls on its CPU until ``until`` (disk I/O)."""
        if until > self.loop.now:
            v = self.guest.toucher(r)
            if v is not None:
                self.disk_wait(v, until)

    # -- touching ----------------------------------------------------------------------------
    def touch(self, r: VMMemory, j: int) -> bool:
        """First touch (or reuse after a drop) of private chunk ``j``."""
        guest = self.guest
        v = guest.toucher(r)
        f = self.get_frame(r, guest.node_of(r, v))
        if f < 0:
            return False
        guest.map_private(r, j, f)
        r.ref[j] = 1
        return True

    def page_in(self, r: VMMemory, j: int) -> bool:
        """Chunk ``j`` is on disk and touched: read it into a new frame; the VCPU waits."""
        guest = self.guest
        v = guest.toucher(r)
        f = self.get_frame(r, guest.node_of(r, v))
        if f < 0:
            return False
        disks = self.disks
        until = disks.request(disks.disk_of(r.vm.id), self.loop.now, self.chunk_mb, write=False)
        self.pager.pages_in += 1
        r.on_disk -= 1
        guest.map_private(r, j, f)
        r.ref[j] = 1
        if v is not None:
            self.disk_wait(v, until)
        return True

    def shared_in(self, r: VMMemory, reg: SharedRegion, i: int) -> bool:
        """Region chunk ``i`` is touched: map it (reading it back if it is on disk)."""
        guest = self.guest
        v = guest.toucher(r)
        f = self.get_frame(r, guest.node_of(r, v))
        if f < 0:
            return False
        if reg.state[i] == ON_DISK:
            disks = self.disks
            until = disks.request(disks.disk_of(r.vm.id), self.loop.now, self.chunk_mb,
                                  write=False)
            self.pager.pages_in += 1
            reg.on_disk -= 1
            if v is not None:
                self.disk_wait(v, until)
        guest.map_shared(reg, i, f)
        return True

    def attach_region(self, r: VMMemory, n: int) -> None:
        """``r`` maps its shared region (``n`` chunks), touching what is not resident."""
        reg = self.guest.join_region(r, n)
        for i in range(reg.n):
            if reg.state[i] != RESIDENT and not self.shared_in(r, reg, i):
                break
        self.guest.region_changed(reg)
