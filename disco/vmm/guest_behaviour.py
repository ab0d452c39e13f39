"""The guest's own memory behaviour: a workload's demand, frees and paging (``WorkloadProfile``
[A] fields), advanced every memory tick.

``memory_initial_fraction`` of its private memory is touched at boot, then it grows by
``memory_growth_mb_per_s`` (Database); the most recent ``working_set_fraction`` of it is hot;
``free_per_s`` of it is freed by the guest per second and reused about ``FREE_LAG_S`` later
(Pmake's short processes); once full and still growing, the guest pages
``guest_paging_mb_per_s`` to its own paging disk. A guest whose chunks the monitor paged out
faults its hot ones back in. The chunks it frees are drawn from its own stream
(``memory/<vm id>``).

What the monitor does with these touches is the allocator's (``allocation.py``) and the
pager's (``paging.py``: what it knows of freed chunks, the virtual paging disk).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from disco.engine import EventLoop
from disco.vmm.allocation import Allocator
from disco.vmm.disk import Disks
from disco.vmm.guest_memory import EMPTY, FREED, ON_DISK, RESIDENT, VMMemory
from disco.vmm.paging import Pager

FREE_LAG_S: Final = 0.5  # [A] a guest-freed chunk is reused about this long after it was freed


class GuestBehaviour:
    def __init__(self, loop: EventLoop, alloc: Allocator, pager: Pager, disks: Disks) -> None:
        self.loop = loop
        self.alloc = alloc
        self.pager = pager
        self.disks = disks
        self.chunk_mb = alloc.chunk_mb

    def boot(self, r: VMMemory) -> None:
        """The guest boots: it touches ``memory_initial_fraction`` of its private memory."""
        p = r.vm.profile
        r.growth = p.memory_growth_mb_per_s / self.chunk_mb
        r.want = p.memory_initial_fraction * r.n
        self.grow(r)

    def step(self, r: VMMemory, dt: float) -> None:
        """One tick of the guest: it grows, frees and reuses, pages, faults its hot chunks."""
        if r.growth and r.want < r.n:
            r.want = min(float(r.n), r.want + r.growth * dt)
        self.grow(r)
        self._frees(r, dt)
        if r.on_disk:
            self._fault_hot(r)

    def grow(self, r: VMMemory) -> None:
        target = min(r.n, int(r.want))
        while r.used < target:
            if r.state[r.used] == EMPTY and not self.alloc.touch(r, r.used):
                break
            r.used += 1
        r.hot = int(r.vm.profile.working_set_fraction * r.used)

    def _frees(self, r: VMMemory, dt: float) -> None:
        p = r.vm.profile
        alloc = self.alloc
        cold = r.used - r.hot
        if p.free_per_s > 0.0 and cold > 0:
            r.free_acc += p.free_per_s * dt * r.used
            k = int(r.free_acc)
            r.free_acc -= k
            for j in _draws(r.rng, cold, k):
                st = r.state[j]
                if st == RESIDENT:
                    r.state[j] = FREED
                    r.ref[j] = 0
                    r.freed.append(j)
                elif st == ON_DISK:
                    self.pager.guest_freed_on_disk(r, j)
                    r.freed.append(j)  # reused later: zero-filled, or read back if kept
            # Reuse: the guest reallocates what it freed about FREE_LAG_S ago.
            keep = int(p.free_per_s * FREE_LAG_S * r.used)
            while len(r.freed) > keep:
                j = r.freed.popleft()
                st = r.state[j]
                if st == FREED:
                    r.state[j] = RESIDENT
                    r.ref[j] = 1
                elif st == EMPTY:
                    if not alloc.touch(r, j):
                        r.freed.appendleft(j)
                        break
                elif st == ON_DISK:  # written although free: read back (no skip_freed)
                    if not alloc.page_in(r, j):
                        r.freed.appendleft(j)
                        break
        if p.guest_paging_mb_per_s > 0.0 and r.want >= r.n and cold > 0 and r.growth:
            r.gp_acc += p.guest_paging_mb_per_s / self.chunk_mb * dt
            while r.gp_acc >= 1.0:
                r.gp_acc -= 1.0
                j = r.guest_clock % cold
                r.guest_clock += 1
                self._guest_page(r, j)

    def _guest_page(self, r: VMMemory, j: int) -> None:
        """The guest OS pages chunk ``j`` out to its own paging disk, then reuses it."""
        if r.state[j] != ON_DISK:
            return  # resident: the guest's own write is part of its I/O model
        alloc = self.alloc
        if self.pager.guest_pages_out(r, j):
            alloc.touch(r, j)
            return
        # Double paging: read the chunk back, then the guest writes it to its disk.
        if alloc.page_in(r, j):
            disks = self.disks
            until = disks.request(disks.disk_of(r.vm.id), self.loop.now, self.chunk_mb,
                                  write=True)
            alloc.stall(r, until)

    def _fault_hot(self, r: VMMemory) -> None:
        alloc = self.alloc
        lo, hi = r.used - r.hot, r.used
        for j in (np.flatnonzero(r.state[lo:hi] == ON_DISK) + lo).tolist():
            if not alloc.page_in(r, j):
                break
        reg = r.region
        if reg is not None and reg.on_disk:
            for i in np.flatnonzero(reg.state == ON_DISK).tolist():
                if not alloc.shared_in(r, reg, i):
                    break


def _draws(rng: np.random.Generator, high: int, k: int) -> list[int]:
    """``rng.integers(0, high, size=k).tolist()``, cheaper for the usual k of 0 or 1: an empty
    draw consumes nothing, and a scalar draw takes the same value from the stream (numpy's
    bounded draws are element by element either way; ``tests/test_memory_draws.py``)."""
    if k == 1:
        return [int(rng.integers(0, high))]
    if k == 0:
        return []
    return rng.integers(0, high, size=k).tolist()
