"""Paging under memory overcommit (PAPER.md, Paging).

The monitor pages to disk only when all cells are short: ``make_room`` is called only after the
VM's own cells are exhausted and borrowing found no cell able to lend (every other live cell
would drop below ``lend_floor_mb``). It frees frames the needing VM can use -- frames managed by
its home cells -- taking them from the VM furthest above its fair share of the machine
(``memory_mb`` share of the running VMs' total; the needing VM first when it is over its share):
resident-set sizes are *trimmed* toward the shares.

Victims inside a VM: second-chance FIFO over its resident set. Chunks enter the FIFO when they
become resident; a chunk in the VM's hot working set, or touched since it was last passed over,
is referenced: it is passed over (its reference bit cleared). When a whole pass has not freed
enough, the chunks passed over for their reference bit alone go next (their second chance is
used up), oldest first, and only then chunks of the hot working set, oldest first; what is
left moves to the back of the FIFO.

The paper's three optimisations, each switchable and counted:

- ``paging_skip_freed``: a chunk the guest has freed is dropped, never written
  (``disk_writes_avoided_free``); without it the write happens, and the guest's reuse of the
  chunk later reads it back. A chunk already on disk when the guest frees it is dropped too,
  so its reuse reads nothing (``disk_reads_avoided_free``).
- ``paging_shared_once``: a chunk shared by several VMs is written once with its sharing
  information (``disk_writes_avoided_shared`` counts the sharers' writes saved); without it,
  once per sharer.
- ``paging_virtual_disk``: when the guest pages out to its (virtual) paging disk a chunk the
  monitor already paged out, only a mapping changes (``disk_writes_avoided_double``); without
  it the chunk is read back and written again (double paging). See ``guest_pages_out``.

Writes and reads go through the disk model (``disk.py``); the VCPU that needed the frame, or
touched the paged-out chunk, waits for the disk (``allocation.Allocator.stall``: waits for
requests queued on one disk overlap).

**Totals are not monotone in the switches.** Each optimisation only removes I/O where it acts:
the same eviction costs fewer requests (``tests/test_paging.py`` checks the runs with it on and
off issue the same I/O until it first acts). From then on they are different simulations: a
shorter disk queue lets a VM whose paging disk was backed up grow and fault again sooner
(``memory.Memory.tick``), stalls change which VCPUs run and touch memory, and under heavy
overcommit (working sets larger than the machine) small timing changes decide, e.g., whether a
VM finishes before its working set has to be paged back in. So on one seed a run with an
optimisation on can write more than the same seed with it off; compare means over replicates.
"""

from __future__ import annotations

from disco.config import PolicyConfig
from disco.engine import EventLoop
from disco.vmm.disk import Disks
from disco.vmm.frames import FrameStore
from disco.vmm.guest_memory import EMPTY, FREED, ON_DISK, RESIDENT, GuestMemory, VMMemory
from disco.vmm.reporting import Report


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
        now = self.loop.now
        done_at = now
        freed = 0
        for victim in self._victims(vmm):
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

    def _victims(self, vmm: VMMemory) -> list[VMMemory]:
        """VMs holding memory in the needing VM's home cells, furthest over their share first."""
        guest = self.guest
        home = vmm.vm.home_cells
        total = self.frames.frames
        mb = max(guest.running_mb, 1)
        cands = []
        for r in guest.records.values():
            if r is not vmm and not any(r.cell_count.get(c, 0) for c in home):
                continue
            share = total * r.vm.memory_mb / mb
            cands.append((-(r.resident_total() - share), r.vm.id, r))
        cands.sort(key=lambda t: (t[0], t[1]))
        return [r for _, _, r in cands]

    def _evict(self, r: VMMemory, home: tuple[int, ...], need: int) -> tuple[int, float]:
        """Second chance over ``r``'s FIFO, evicting frames managed by ``home`` cells."""
        fifo = r.fifo
        manager = self.frames.manager
        done_at = self.loop.now
        count = 0
        hot_lo = r.used - r.hot
        limit = len(fifo)
        passed: list[int] = []  # referenced entries passed over (second chance)
        steps = 0
        while count < need and fifo and steps < limit:
            e = fifo.popleft()
            steps += 1
            f = self._frame_of(r, e)
            if f < 0:
                continue  # stale entry: no longer resident
            if int(manager[f]) not in home:
                fifo.append(e)
                continue
            if self._referenced(r, e, hot_lo):
                passed.append(e)
                continue
            done_at = max(done_at, self._evict_one(r, e, f))
            count += 1
        # The pass is over: chunks passed over only for their reference bit (now cleared)
        # have had their second chance and go next, oldest first; the hot working set last.
        for hot_too in (False, True):
            kept: list[int] = []
            for e in passed:
                if count >= need:
                    kept.append(e)
                    continue
                f = self._frame_of(r, e)
                if f < 0:
                    continue
                if not hot_too and self._referenced(r, e, hot_lo):
                    kept.append(e)
                    continue
                done_at = max(done_at, self._evict_one(r, e, f))
                count += 1
            passed = kept
        fifo.extend(passed)
        return count, done_at

    def _frame_of(self, r: VMMemory, e: int) -> int:
        if e >= 0:
            return int(r.frame[e]) if r.state[e] in (RESIDENT, FREED) else -1
        reg = r.region
        i = -e - 1
        if reg is None or not reg.sharers or reg.sharers[0] != r.vm.id:
            return -1
        return int(reg.frame[i]) if reg.state[i] == RESIDENT else -1

    def _referenced(self, r: VMMemory, e: int, hot_lo: int) -> bool:
        if e >= 0:
            if r.ref[e]:
                r.ref[e] = 0
                return True
            return e >= hot_lo and bool(r.state[e] == RESIDENT)  # a bool, not numpy's
        reg = r.region  # the guest kernel (hot) then binaries and libraries (cold)
        return reg is not None and -e - 1 < r.vm.profile.working_set_fraction * reg.n

    def _evict_one(self, r: VMMemory, e: int, f: int) -> float:
        now = self.loop.now
        disks = self.disks
        disk = disks.disk_of(r.vm.id)
        chunk = self.chunk_mb
        done_at = now
        self.pages_out += 1
        if e >= 0:
            if r.state[e] == FREED and self.skip_freed:
                self.avoided_free += 1
                r.state[e] = EMPTY
            else:
                done_at = disks.request(disk, now, chunk, write=True)
                r.state[e] = ON_DISK
                r.on_disk += 1
            self.guest.unmap_private(r, e, f)
            return done_at
        reg = r.region
        assert reg is not None
        i = -e - 1
        writes = 1 if self.shared_once else len(reg.sharers)
        self.avoided_shared += len(reg.sharers) - writes
        for _ in range(writes):
            done_at = disks.request(disk, now, chunk, write=True)
        reg.state[i] = ON_DISK
        reg.on_disk += 1
        self.guest.unmap_shared(reg, i, f)
        return done_at

    # -- what the guest's own behaviour meets (guest_behaviour.py) ----------------------------
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
