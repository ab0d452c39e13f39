"""The guest's own memory behaviour: a workload's demand, frees and paging (``WorkloadProfile``
[A] fields), advanced every memory tick by the work the VM did.

**Demand follows the workload.** At each tick every VCPU's progress since the last one is read
(``progress``: native CPU-seconds of work, over the VM's ``base_rate``, i.e. seconds of running
unimpeded), and all guest behaviour is per unit of that progress, never per wall second: a VM
waiting for the disk, a loan or a shortage makes no new demands, and one that runs makes the
same demands per unit of work whatever the disks do. ``memory_initial_fraction`` of its private
memory is touched at boot, then it grows by ``memory_growth_mb_per_s`` (Database); the newest
``working_set_fraction`` of it is hot; ``free_per_s`` of it is freed by the guest and reused
about ``FREE_LAG_S`` of progress later (Pmake's short processes); once full and still growing,
the guest pages ``guest_paging_mb_per_s`` to its own paging disk. The chunks it frees are
drawn from its own stream (``memory/<vm id>``).

**A fault waits for its own I/O.** Each VCPU references its own hot chunks (``GuestMemory``:
chunk ``j`` is VCPU ``j % vcpus``'s) as it runs: one that progressed ``dp`` faults on
``dp / working_set_touch_s`` of its paged-out hot chunks (all of them once it has run that
long), and each fault maps the chunk and makes that VCPU wait for the read, queued at its VM's
paging disk. A VCPU that does not run does not fault. The hot part of a shared region on disk
is faulted by the first sharer VCPU that progressed.

What the monitor does with these touches is the allocator's (``allocation.py``) and the
pager's (``paging.py``: what it knows of freed chunks, the virtual paging disk).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from disco.engine import EventLoop
from disco.vmm.allocation import DISK, Allocator
from disco.vmm.disk import Disks
from disco.vmm.guest_memory import EMPTY, FREED, ON_DISK, RESIDENT, GuestMemory, VMMemory
from disco.vmm.paging import Pager
from disco.vmm.state import DONE, LOST, RUNNING, VCPU

FREE_LAG_S: Final = 0.5  # [A] a guest-freed chunk is reused about this much progress later


def progress(v: VCPU, now: float) -> float:
    """Native CPU-seconds of work ``v`` has done by ``now``, its running segment included
    (read only: it closes no segment)."""
    done = v.vm.work_s - v.work_left
    if v.state == RUNNING:
        t = now - v.seg_start - v.debt
        if t > 0.0:
            done += t * v.rate
    return done


class GuestBehaviour:
    def __init__(self, loop: EventLoop, guest: GuestMemory, alloc: Allocator, pager: Pager,
                 disks: Disks, tick_s: float, touch_s: float) -> None:
        self.loop = loop
        self.guest = guest
        self.alloc = alloc
        self.pager = pager
        self.disks = disks
        self.chunk_mb = alloc.chunk_mb
        self.tick_s = tick_s
        self.touch_s = touch_s  # working_set_touch_s

    def boot(self, r: VMMemory) -> None:
        """The guest boots: it touches ``memory_initial_fraction`` of its private memory."""
        p = r.vm.profile
        now = self.loop.now
        r.prog = [progress(v, now) for v in r.vm.vcpus] or [0.0]
        r.growth = p.memory_growth_mb_per_s / self.chunk_mb
        r.want = p.memory_initial_fraction * r.n
        self.grow(r, spread=False)

    def busy(self, r: VMMemory) -> bool:
        """Does the guest have anything to do this tick (beyond the NUMA policy)?"""
        reg = r.region
        return (r.active or r.on_disk > 0 or r.used < min(r.n, int(r.want))
                or (reg is not None and (reg.on_disk > 0
                                         or reg.resident + reg.on_disk < reg.n)))

    def step(self, r: VMMemory) -> None:
        """One tick of the guest, per the progress each VCPU made since the last: it grows,
        frees and reuses, pages, faults on its paged-out hot chunks."""
        vm = r.vm
        now = self.loop.now
        prog = r.prog
        norm = 1.0 / vm.base_rate if vm.base_rate > 0.0 else 1.0
        dps: list[float] = []
        total = 0.0
        for v in vm.vcpus:
            x = progress(v, now)
            d = (x - prog[v.index]) * norm
            prog[v.index] = x
            dps.append(d)
            total += d
        dp = total / len(dps) if dps else 0.0
        if r.growth and r.want < r.n:
            r.want = min(float(r.n), r.want + r.growth * dp)
        self.grow(r)
        if r.region is not None and self.alloc.region_missing(r):
            self.alloc.fill_region(r)
        if dp > 0.0:
            self._frees(r, dp)
        reg = r.region
        if r.on_disk or (reg is not None and reg.on_disk):
            self._faults(r, dps)

    def grow(self, r: VMMemory, spread: bool = True) -> None:
        """Touch the chunks up to the guest's demand, spread over the coming tick (``spread``);
        owners of what cannot be had wait for the next tick's retry."""
        alloc = self.alloc
        target = min(r.n, int(r.want))
        k = target - r.used
        step = self.tick_s / k if spread and k > 0 else 0.0
        i = 0
        while r.used < target:
            j = r.used
            if r.state[j] == EMPTY and not alloc.touch(r, j, offset=i * step):
                alloc.short_wait(r, j, target)
                break
            i += 1
            r.used += 1
        self.guest.set_window(r)

    def _frees(self, r: VMMemory, dp: float) -> None:
        p = r.vm.profile
        alloc = self.alloc
        pager = self.pager
        cold = r.lo
        if p.free_per_s > 0.0 and cold > 0:
            r.free_acc += p.free_per_s * dp * r.used
            k = int(r.free_acc)
            r.free_acc -= k
            for j in _draws(r.rng, cold, k):
                st = r.state[j]
                if st == RESIDENT:
                    r.state[j] = FREED
                    r.ref[j] = 0
                    r.freed.append(j)
                    pager.guest_freed(r, j)
                elif st == ON_DISK:
                    pager.guest_freed_on_disk(r, j)
                    r.freed.append(j)  # reused later: zero-filled, or read back if kept
            # Reuse: the guest reallocates what it freed about FREE_LAG_S of progress ago.
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
                        alloc.short_wait(r, j, j + 1)
                        break
                elif st == ON_DISK:  # written although free: read back (no skip_freed)
                    if not alloc.page_in(r, j):
                        r.freed.appendleft(j)
                        alloc.short_wait(r, j, j + 1)
                        break
        if p.guest_paging_mb_per_s > 0.0 and r.want >= r.n and cold > 0 and r.growth:
            r.gp_acc += p.guest_paging_mb_per_s / self.chunk_mb * dp
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
        v = self.guest.owner(r, j)
        if alloc.page_in(r, j, v) and v is not None:
            disks = self.disks
            until = disks.request(disks.disk_of(r.vm.id), self.loop.now, self.chunk_mb,
                                  write=True)
            alloc.waits.wait(v, until, DISK)

    def _faults(self, r: VMMemory, dps: list[float]) -> None:
        """Each VCPU that progressed references its hot chunks: the paged-out ones fault, at
        ``dp / working_set_touch_s`` of them this tick, and it waits for each read."""
        alloc = self.alloc
        nv = r.nv
        lo, hi = r.lo, r.lo + r.hot
        if r.on_disk and hi > lo:
            state = r.state
            for v in r.vm.vcpus:
                d = dps[v.index]
                if d <= 0.0 or v.state == DONE or v.state == LOST:
                    continue
                j0 = lo + (v.index - lo) % nv
                if j0 >= hi:
                    continue
                out = np.flatnonzero(state[j0:hi:nv] == ON_DISK)
                if not len(out):
                    continue
                acc = r.fault_acc[v.index] + len(out) * min(1.0, d / self.touch_s)
                k = int(acc)
                r.fault_acc[v.index] = acc - k
                for x in out[:k].tolist():
                    j = j0 + x * nv
                    if not alloc.page_in(r, j, v):
                        alloc.short_wait(r, j, j + 1)
                        break
        reg = r.region
        if reg is not None and reg.on_disk:
            hot = math.ceil(r.vm.profile.working_set_fraction * reg.n)  # as the pager's
            for v in r.vm.vcpus:
                if dps[v.index] > 0.0 and v.state != DONE and v.state != LOST:
                    for i in np.flatnonzero(reg.state[:hot] == ON_DISK).tolist():
                        if not alloc.shared_in(r, reg, i, v):
                            break
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
