"""Paging under memory overcommit (PAPER.md, Paging).

The monitor pages to disk only when all cells are short: ``make_room`` is called only after the
VM's own cells are exhausted and borrowing found no cell able to lend (every other live cell
would drop below ``lend_floor_mb``). It frees frames the needing VM can use -- frames managed by
its home cells.

**Resident-set sizes and trimming** [A]. Each VM's resident-set size is its fair share of the
frames its home cells manage (their own and borrowed): its ``memory_mb`` share among the VMs
homed in any of those cells; a shared region counts split between its sharers. While frames are
free a VM may exceed its size. Once none is, a VM at or above its size pages against its own
resident set (local replacement), and a VM below it takes frames from the VMs furthest above
theirs (their resident sets are *trimmed*). So a VM booting into a full cell takes the older
VMs' idle memory, not its own fresh chunks, and once the sizes bind each VM's faults depend on
its own work and size.

**Victims inside a VM: second-chance FIFO** over its resident set, by age and reference (the
FIFO: ``guest_memory.py``). With ``paging_skip_freed`` the chunks guests have freed go first,
any VM's in the cells (free memory costs its guest nothing but a zero-filled reallocation),
before anyone's resident set is trimmed. Then at most three laps: the first evicts
unreferenced chunks and passes referenced ones over (bit cleared, to the back with a new time:
their second chance), the second evicts any chunk outside the hot working set, the third
anything, oldest first. A chunk is *referenced* if its reference bit is set (first touch,
page-in, reuse) or it is in a VCPU's hot working set and that VCPU ran since the chunk was last
passed over (``VCPU.seg_start``: a VCPU off its CPU last ran then; the region's hot kernel: any
sharer's VCPU). A VCPU waiting for the disk does not run, so a stalled VM's working set ages.

The paper's three optimisations, each switchable and counted:

- ``paging_skip_freed``: the monitor hooks the guest's free routine, so a chunk the guest has
  freed is reclaimed first, before the FIFO is scanned, and never written
  (``disk_writes_avoided_free``); without it the monitor does not know the chunk is free: it
  ages in the FIFO like any other, is written, and the guest's reuse reads it back. A chunk
  already on disk when the guest frees it is dropped too, so its reuse reads nothing
  (``disk_reads_avoided_free``).
- ``paging_shared_once``: a chunk shared by several VMs is written once with its sharing
  information (``disk_writes_avoided_shared`` counts the sharers' writes saved); without it,
  once per sharer.
- ``paging_virtual_disk``: when the guest pages out to its (virtual) paging disk a chunk the
  monitor already paged out, only a mapping changes (``disk_writes_avoided_double``); without
  it the chunk is read back and written again (double paging). See ``guest_pages_out``.

Writes and reads go through the disk model (``disk.py``). The VCPU that needed the frame waits
for the batch's writes, and one that faults on a paged-out chunk for its read
(``allocation.Allocator.wait``). Demand comes from the guests' progress
(``guest_behaviour.py``), never from the disks' state: the same work makes the same demands
whatever the disks do, and more or faster disks only shorten the waits.

**When working sets fit** (the hot sets of the VMs sharing a cell fit its memory), more disks
never increase the stall and faster disks never increase the writes: what is paged is what the
work makes cold, whenever it is paged (``tests/test_paging.py``). **When they do not fit**
(thrashing) more or faster disks still cut the stall and run time, but a faster disk can
*raise* the writes: with a slow disk every VCPU waits seconds for its reads, they take turns,
and each runs its burst with its working set resident (the thrashing system's effective
multiprogramming level is low); with a fast disk they run at once and keep evicting each
other's working sets. That is the thrash's own dynamics, not demand following the disk, and why
the paging figure shows writes per CPU-second of work done (docs/figures.md).

**Totals are not monotone in the switches.** Each optimisation only removes I/O where it acts:
the same eviction costs fewer requests (``tests/test_paging.py`` checks the runs with it on and
off issue the same I/O until it first acts). From then on they are different simulations:
shorter waits change which VCPUs run and touch memory, and under heavy overcommit small timing
changes decide, e.g., whether a VM finishes before its working set has to be paged back in. So
on one seed a run with an optimisation on can write more than the same seed with it off;
compare means over replicates.
"""

from __future__ import annotations

from collections import deque

from disco.config import PolicyConfig
from disco.engine import EventLoop
from disco.vmm.disk import Disks
from disco.vmm.frames import FrameStore
from disco.vmm.guest_memory import EMPTY, FREED, ON_DISK, RESIDENT, GuestMemory, VMMemory
from disco.vmm.reporting import Report
from disco.vmm.state import RUNNING


class Pager:
    def __init__(self, p: PolicyConfig, loop: EventLoop, frames: FrameStore, guest: GuestMemory,
                 disks: Disks) -> None:
        self.loop = loop
        self.frames = frames
        self.guest = guest
        self.disks = disks
        self.chunk_mb = p.chunk_mb
        self.enabled = p.paging
        self.skip_freed = p.paging_skip_freed
        self.shared_once = p.paging_shared_once
        self.virtual_disk = p.paging_virtual_disk
        self.pages_out = 0
        self.pages_in = 0
        self.avoided_free = 0
        self.avoided_free_reads = 0
        self.avoided_shared = 0
        self.avoided_double = 0
        # The most free memory any other live cell had when paging began (tests: every cell
        # was short, i.e. could not lend).
        self.max_other_free_at_page = -1
        # Per make_room call: home cells -> (frames they manage, memory_mb of the VMs there).
        self._cap: dict[tuple[int, ...], tuple[int, int]] = {}

    def report(self, out: Report) -> None:
        out.metrics.update({
            "pages_out": self.pages_out,
            "pages_in": self.pages_in,
            "disk_writes_avoided_free": self.avoided_free,
            "disk_writes_avoided_shared": self.avoided_shared,
            "disk_writes_avoided_double": self.avoided_double,
            "disk_reads_avoided_free": self.avoided_free_reads,
        })

    def make_room(self, vmm: VMMemory, need: int) -> float:
        """Evict up to ``need`` chunks into frames ``vmm`` can use. Returns the time the last
        write completes (now if none), or -1.0 if nothing could be freed."""
        if not self.enabled:
            return -1.0
        frames = self.frames
        home = vmm.vm.home_cells
        others = [frames.cell_free[c] for c in range(len(frames.cell_free))
                  if c not in home and frames.cell_online[c]]
        if others:
            self.max_other_free_at_page = max(self.max_other_free_at_page, max(others))
        done_at = self.loop.now
        freed = 0
        self._cap = {}
        victims = self._victims(vmm)
        if self.skip_freed:  # memory a guest has freed goes first, whoever's it is
            for victim in victims:
                freed += self._reclaim_freed(victim, home, need - freed)
                if freed >= need:
                    return done_at
        for victim in victims:
            n, t = self._evict(victim, home, need - freed)
            freed += n
            done_at = max(done_at, t)
            if freed >= need:
                break
        return done_at if freed else -1.0

    def trim(self, r: VMMemory, chunks: int) -> float:
        """Trim ``r``'s resident set to at most ``chunks`` (second chance, any cell). Returns
        the time the last write completes."""
        excess = r.resident_total() - chunks
        if excess <= 0:
            return self.loop.now
        cells = tuple(range(len(self.frames.cell_free)))
        return self._evict(r, cells, excess)[1]

    # -- who gives -----------------------------------------------------------------------------
    def excess(self, r: VMMemory) -> float:
        """Resident chunks above ``r``'s resident-set size (the module docstring)."""
        frames = self.frames
        home = r.vm.home_cells
        cap = self._cap.get(home)
        if cap is None:
            per_cell = frames.fpn * frames.machine.nodes_per_cell
            managed = 0
            for c in home:
                if frames.cell_online[c]:
                    managed += per_cell + sum(frames.lent.get(c, {}).values())
            mb = 0
            for o in self.guest.records.values():
                if any(c in home for c in o.vm.home_cells):
                    mb += o.vm.memory_mb
            cap = self._cap[home] = (managed, max(mb, 1))
        held = float(r.resident)
        reg = r.region
        if reg is not None and reg.sharers:
            held += reg.resident / len(reg.sharers)
        return held - cap[0] * r.vm.memory_mb / cap[1]

    def _victims(self, vmm: VMMemory) -> list[VMMemory]:
        """The VMs that may hold frames of the needing VM's home cells (homed there, or with
        memory on their nodes), furthest above their sizes first, the needing VM itself first
        if it is at or above its own, else last."""
        home = vmm.vm.home_cells
        cands = [(-self.excess(r), r.vm.id, r) for r in self.guest.records.values()
                 if r is not vmm and (any(c in home for c in r.vm.home_cells)
                                      or any(r.cell_count.get(c, 0) for c in home))]
        cands.sort(key=lambda t: (t[0], t[1]))
        rest = [r for _, _, r in cands]
        return [vmm, *rest] if self.excess(vmm) >= 0.0 else [*rest, vmm]

    # -- what goes, inside one VM ----------------------------------------------------------------
    def _reclaim_freed(self, r: VMMemory, home: tuple[int, ...], need: int) -> int:
        """Up to ``need`` of the chunks ``r``'s guest freed (skip_freed: the monitor knows
        them), in frames managed by ``home`` cells: dropped, never written."""
        manager = self.frames.manager
        count = 0
        q = r.freed_res
        for _ in range(len(q)):
            if count >= need:
                break
            j, gen = q.popleft()
            if int(r.gen[j]) != gen or r.state[j] != FREED:
                continue  # reused or gone since
            if int(manager[int(r.frame[j])]) not in home:
                q.append((j, gen))  # for a VM of that frame's cell
                continue
            self._evict_one(r, j)
            count += 1
        return count

    def _evict(self, r: VMMemory, home: tuple[int, ...], need: int) -> tuple[int, float]:
        """Guest-freed chunks first (skip_freed), then second chance over ``r``'s FIFO,
        evicting frames managed by ``home`` cells."""
        now = self.loop.now
        manager = self.frames.manager
        done_at = now
        count = self._reclaim_freed(r, home, need) if self.skip_freed else 0
        fifo = r.fifo
        for lap in (1, 2, 3):
            steps = len(fifo)
            while count < need and steps > 0 and fifo:
                steps -= 1
                e = fifo.popleft()
                code, gen, t = e
                if not r.entry_valid(code, gen):
                    continue  # dead entry: dropped
                if int(manager[self._frame_of(r, code)]) not in home:
                    fifo.append(e)
                    continue
                if lap == 1 and self._referenced(r, code, t, now):
                    fifo.append((code, gen, now))
                    continue
                if lap == 2 and self._hot(r, code):
                    fifo.append(e)
                    continue
                done_at = max(done_at, self._evict_one(r, code))
                count += 1
            if count >= need:
                break
        return count, done_at

    def _frame_of(self, r: VMMemory, code: int) -> int:
        if code >= 0:
            return int(r.frame[code])
        reg = r.region
        assert reg is not None
        return int(reg.frame[-code - 1])

    def _hot(self, r: VMMemory, code: int) -> bool:
        """In the hot working set: the private window, or the region's hot part (the guest
        kernel, before its binaries and libraries)."""
        if code >= 0:
            return r.lo <= code < r.lo + r.hot and bool(r.state[code] == RESIDENT)
        reg = r.region
        assert reg is not None
        return -code - 1 < r.vm.profile.working_set_fraction * reg.n

    def _referenced(self, r: VMMemory, code: int, t: float, now: float) -> bool:
        """Touched since it was last passed over (at ``t``); clears the reference bit."""
        if code >= 0:
            if r.ref[code]:
                r.ref[code] = 0
                return True
            if r.lo <= code < r.lo + r.hot and r.state[code] == RESIDENT:
                v = r.vm.vcpus[code % r.nv]
                return (now if v.state == RUNNING else v.seg_start) > t
            return False
        reg = r.region
        assert reg is not None
        i = -code - 1
        if reg.ref[i]:
            reg.ref[i] = 0
            return True
        if not self._hot(r, code):
            return False
        records = self.guest.records
        for vid in reg.sharers:
            for v in records[vid].vm.vcpus:
                if (now if v.state == RUNNING else v.seg_start) > t:
                    return True
        return False

    def _evict_one(self, r: VMMemory, code: int) -> float:
        now = self.loop.now
        disks = self.disks
        disk = disks.disk_of(r.vm.id)
        chunk = self.chunk_mb
        done_at = now
        self.pages_out += 1
        if code >= 0:
            f = int(r.frame[code])
            if r.state[code] == FREED and self.skip_freed:
                self.avoided_free += 1
                r.state[code] = EMPTY
            else:
                done_at = disks.request(disk, now, chunk, write=True)
                r.state[code] = ON_DISK
                r.on_disk += 1
            self.guest.unmap_private(r, code, f)
            return done_at
        reg = r.region
        assert reg is not None
        i = -code - 1
        f = int(reg.frame[i])
        writes = 1 if self.shared_once else len(reg.sharers)
        self.avoided_shared += len(reg.sharers) - writes
        for _ in range(writes):
            done_at = disks.request(disk, now, chunk, write=True)
        reg.state[i] = ON_DISK
        reg.on_disk += 1
        self.guest.unmap_shared(reg, i, f)
        return done_at

    # -- what the guest's own behaviour meets (guest_behaviour.py) ----------------------------
    def guest_freed(self, r: VMMemory, j: int) -> None:
        """The guest freed resident chunk ``j``. With ``paging_skip_freed`` the monitor hooks
        the guest's free routine: it knows the chunk is free and reclaims it first."""
        if self.skip_freed:
            q = r.freed_res
            q.append((j, int(r.gen[j])))
            if len(q) > r.used + 64:  # drop the reused ones: amortised O(1) per entry
                r.freed_res = deque(e for e in q if int(r.gen[e[0]]) == e[1]
                                      and r.state[e[0]] == FREED)

    def guest_freed_on_disk(self, r: VMMemory, j: int) -> None:
        """The guest freed chunk ``j``, which is on disk. With ``paging_skip_freed`` the
        monitor learns the data is dead and drops it: its reuse reads nothing back."""
        if self.skip_freed:
            r.state[j] = EMPTY
            r.on_disk -= 1
            self.avoided_free_reads += 1

    def guest_pages_out(self, r: VMMemory, j: int) -> bool:
        """The guest pages chunk ``j``, which the monitor already paged out, to its own paging
        disk. With ``paging_virtual_disk`` only a mapping changes (True: the chunk is empty
        now, for the guest to reuse); otherwise False: it must be read back and written
        again (double paging)."""
        if not self.virtual_disk:
            return False
        self.avoided_double += 1  # remap the monitor's copy to the guest's disk
        r.state[j] = EMPTY
        r.on_disk -= 1
        return True
