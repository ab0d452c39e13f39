"""Guest memory: each VM's guest-physical memory mapped onto frames, its FIFO, shared regions.

Each VM's memory is ``memory_mb / chunk_mb`` chunks: ``shared_mb`` of guest kernel and binaries
in a shared region, the rest private. A private chunk has a state (empty, resident, on disk,
guest-freed), a frame, a reference bit and a generation (per-VM numpy arrays). The guest kernel
and binaries are identical across the VMs of one workload homed in one cell: one copy-on-write
region, mapped by each sharer (sharing stays inside a cell so it never breaks fault
containment); its first sharer holds the region's chunks in its FIFO.

**The FIFO** (the pager's second chance, ``paging.py``) holds ``(chunk, generation, time)``
entries: a chunk enters when it becomes resident (``time``: then, or when the pager last passed
it over). A chunk's generation is bumped whenever it is mapped or unmapped, so an entry is live
iff its generation is the chunk's (``entry_valid``): every resident chunk has exactly one live
entry, and dead ones are dropped lazily (compaction keeps the FIFO under twice the resident
set). A copy to another frame (NUMA migration, a whole-VM move) keeps its entry and place.

**Per-VCPU working sets** [A]. Private chunk ``j`` belongs to VCPU ``j % vcpus`` (``owner``):
that VCPU first-touches it, on its own node, and faults it back in. The guest's hot working set
is the window ``[lo, lo + hot)``, the newest ``working_set_fraction`` of its used chunks; the
resident hot chunks are counted per node, for each VCPU's own part (``hot_node``, ``hot_res``)
and for the whole window (``hot_all``, ``hot_all_n``), which is what the remote-access model
weighs. Both ends of the window only move up, so ``set_window`` touches only the chunks that
cross them.

Per VM, resident frames are also counted per node and per cell, incrementally, so nothing is
O(all chunks) per event; the cells are the VM's memory footprint (``memory_cells``), which the
containment rule asks, and ``lost_share`` says how much of a VM's memory a set of failed cells
held.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import numpy as np

from disco.engine import EventLoop
from disco.vmm.frames import REPLICA, SHARED, FrameStore
from disco.vmm.reporting import Report
from disco.vmm.state import CPU, DONE, LOST, VCPU, VM

# Chunk states. Final: inlined when compiled (see vmm/state.py)
EMPTY: Final = 0
RESIDENT: Final = 1
ON_DISK: Final = 2
FREED: Final = 3


class SharedRegion:
    """Guest kernel and binaries of one workload in one cell, mapped copy-on-write by each
    sharer; ``replicas[node]`` maps chunks to their read-only copies on that node."""

    __slots__ = ("key", "n", "frame", "state", "gen", "ref", "on_disk", "sharers",
                 "node_count", "cell_count", "replicas", "resident")

    def __init__(self, key: tuple[str, int], n: int) -> None:
        self.key = key
        self.n = n
        self.frame = np.full(n, -1, np.int32)
        self.state = np.zeros(n, np.int8)
        self.gen = np.zeros(n, np.int32)  # bumped at every map and unmap: dead FIFO entries
        self.ref = np.zeros(n, np.int8)
        self.on_disk = 0
        self.sharers: list[int] = []  # VM ids, in arrival order; the first holds the FIFO
        self.node_count: dict[int, int] = {}
        self.cell_count: dict[int, int] = {}
        self.replicas: dict[int, dict[int, int]] = {}  # node -> chunk -> replica frame
        self.resident = 0


class VMMemory:
    """One VM's guest-physical memory: ``n`` private chunks plus its shared region."""

    __slots__ = ("vm", "n", "nv", "state", "frame", "ref", "gen", "used", "want", "hot", "lo",
                 "node_count", "cell_count", "hot_node", "hot_res", "hot_all", "hot_all_n",
                 "fifo", "freed_res", "resident", "on_disk", "factor", "remote", "region",
                 "lenders", "rr", "freed", "free_acc", "gp_acc", "guest_clock", "dirty", "rng",
                 "growth", "prog", "fault_acc", "active")

    def __init__(self, vm: VM, n: int, rng: np.random.Generator) -> None:
        self.vm = vm
        self.n = n
        self.nv = nv = max(1, len(vm.vcpus))
        self.state = np.zeros(n, np.int8)
        self.frame = np.full(n, -1, np.int32)
        self.ref = np.zeros(n, np.int8)
        self.gen = np.zeros(n, np.int32)  # bumped at every map and unmap: dead FIFO entries
        self.node_count: dict[int, int] = {}  # resident private frames per node
        self.cell_count: dict[int, int] = {}  # ... per cell (the region counts its own)
        # Resident hot chunks per node: of each VCPU's own part, and of the whole window.
        self.hot_node: list[dict[int, int]] = [{} for _ in range(nv)]
        self.hot_res = [0] * nv
        self.hot_all: dict[int, int] = {}
        self.hot_all_n = 0
        # Second chance over its resident set: (chunk, generation, time it entered or was last
        # passed over); chunk j >= 0 private, -(i + 1) chunk i of its region (if it holds it).
        self.fifo: deque[tuple[int, int, float]] = deque()
        # Guest-freed resident chunks, (chunk, generation), when the monitor hooks the guest's
        # free routine (paging_skip_freed): reclaimed before the FIFO is scanned.
        self.freed_res: deque[tuple[int, int]] = deque()
        self.resident = 0
        self.on_disk = 0
        self.region: SharedRegion | None = None
        self.rr = 0  # next VCPU to touch shared memory
        # The guest's own behaviour (guest_behaviour.py), on its own stream ``memory/<vm>``.
        self.used = 0  # private chunks [0, used) are in use by the guest
        self.want = 0.0  # guest demand in chunks (grows)
        self.lo = 0  # the hot working set is [lo, lo + hot) (= [lo, used) after each grow)
        self.hot = 0
        self.growth = 0.0  # chunks per second of progress
        self.freed: deque[int] = deque()
        self.free_acc = 0.0
        self.gp_acc = 0.0
        self.guest_clock = 0
        self.rng = rng
        self.prog = [0.0] * nv  # each VCPU's progress at the last tick
        self.fault_acc = [0.0] * nv  # fractional faults carried to the next tick
        p = vm.profile
        # Anything to do at a tick beyond the NUMA policy (growth, churn, guest paging)?
        self.active = (p.memory_growth_mb_per_s > 0.0 or p.free_per_s > 0.0
                       or p.guest_paging_mb_per_s > 0.0)
        # The remote-access model's cache (remote_access.py): placement changed since
        # (``dirty``), and per (VCPU, node) the rate factor and the remote share.
        self.dirty = True
        self.factor: dict[int, float] = {}
        self.remote: dict[int, float] = {}
        # Borrowing's list (borrowing.py): cells lending to it, in the order they were added.
        self.lenders: list[int] = []

    def holds_region(self) -> bool:
        """Is this VM its region's first sharer (the one whose FIFO holds the region)?"""
        reg = self.region
        return reg is not None and bool(reg.sharers) and reg.sharers[0] == self.vm.id

    def resident_total(self) -> int:
        if self.holds_region():
            assert self.region is not None
            return self.resident + self.region.resident
        return self.resident

    def entry_valid(self, code: int, gen: int) -> bool:
        """Is FIFO entry ``(code, gen)`` live (its chunk resident, mapped since it entered)?"""
        if code >= 0:
            return int(self.gen[code]) == gen
        reg = self.region
        return (reg is not None and bool(reg.sharers) and reg.sharers[0] == self.vm.id
                and int(reg.gen[-code - 1]) == gen)


class GuestMemory:
    def __init__(self, loop: EventLoop, frames: FrameStore, cpus: list[CPU],
                 vms: list[VM]) -> None:
        self.loop = loop
        self.frames = frames
        self.vms = vms  # every VM, for the per-VM column
        self.fpn = frames.fpn
        self.cell_of_node = frames.cell_of_node
        self.node_of_cpu = [c.node for c in cpus]
        self.records: dict[int, VMMemory] = {}
        self.regions: dict[tuple[str, int], SharedRegion] = {}
        self.running_mb = 0  # memory_mb of the VMs with a record
        self.peak_running_mb = 0
        self.cells_max: dict[int, int] = {}  # VM id -> most cells its memory spanned

    # -- a VM's record ----------------------------------------------------------------------
    def add(self, vm: VM, private: int, rng: np.random.Generator) -> VMMemory:
        r = VMMemory(vm, private, rng)
        self.records[vm.id] = r
        self.running_mb += vm.memory_mb
        self.peak_running_mb = max(self.peak_running_mb, self.running_mb)
        return r

    def remove(self, vm: VM) -> VMMemory | None:
        """``vm`` ended: its record leaves (its frames are the caller's to unmap)."""
        r = self.records.get(vm.id)
        if r is None:
            return None
        self.note_cells(vm)
        del self.records[vm.id]
        self.running_mb -= vm.memory_mb
        return r

    # -- mapping -----------------------------------------------------------------------------
    def map_private(self, r: VMMemory, j: int, f: int, enqueue: bool = True) -> None:
        """Chunk ``j`` of ``r`` now lives in frame ``f``; ``enqueue``: it (re)enters the FIFO
        (a copy to another frame keeps its entry: ``move_private``)."""
        self.frames.assign(f, r.vm.id, j)
        r.frame[j] = f
        r.state[j] = RESIDENT
        n = f // self.fpn
        c = self.cell_of_node[n]
        r.node_count[n] = r.node_count.get(n, 0) + 1
        r.cell_count[c] = r.cell_count.get(c, 0) + 1
        r.resident += 1
        r.dirty = True
        if r.lo <= j < r.lo + r.hot:
            self._hot_add(r, j, n, 1)
        if enqueue:
            g = int(r.gen[j]) + 1
            r.gen[j] = g
            self._enqueue(r, j, g)

    def unmap_private(self, r: VMMemory, j: int, f: int, keep_entry: bool = False) -> None:
        r.frame[j] = -1
        n = f // self.fpn
        c = self.cell_of_node[n]
        _dec(r.node_count, n)
        _dec(r.cell_count, c)
        r.resident -= 1
        r.dirty = True
        if r.lo <= j < r.lo + r.hot:
            self._hot_add(r, j, n, -1)
        if not keep_entry:
            r.gen[j] += 1
        self.frames.push(f)

    def move_private(self, r: VMMemory, j: int, g: int) -> None:
        """Chunk ``j`` is copied to frame ``g`` (its state and FIFO entry kept)."""
        f = int(r.frame[j])
        state = int(r.state[j])
        self.unmap_private(r, j, f, keep_entry=True)
        self.map_private(r, j, g, enqueue=False)
        r.state[j] = state

    def _enqueue(self, r: VMMemory, code: int, gen: int) -> None:
        fifo = r.fifo
        fifo.append((code, gen, self.loop.now))
        if len(fifo) > 2 * r.resident_total() + 64:
            # Drop dead entries (unmapped or re-entered since): amortised O(1) per entry.
            r.fifo = deque(e for e in fifo if r.entry_valid(e[0], e[1]))

    def map_shared(self, reg: SharedRegion, i: int, f: int) -> None:
        self.frames.assign(f, SHARED, i)
        reg.frame[i] = f
        reg.state[i] = RESIDENT
        reg.ref[i] = 1
        n = f // self.fpn
        reg.node_count[n] = reg.node_count.get(n, 0) + 1
        c = self.cell_of_node[n]
        reg.cell_count[c] = reg.cell_count.get(c, 0) + 1
        reg.resident += 1
        g = int(reg.gen[i]) + 1
        reg.gen[i] = g
        holder = self.records.get(reg.sharers[0]) if reg.sharers else None
        if holder is not None:
            self._enqueue(holder, -(i + 1), g)
        self.region_changed(reg)

    def unmap_shared(self, reg: SharedRegion, i: int, f: int) -> None:
        reg.frame[i] = -1
        reg.gen[i] += 1
        n = f // self.fpn
        _dec(reg.node_count, n)
        _dec(reg.cell_count, self.cell_of_node[n])
        reg.resident -= 1
        self.frames.push(f)
        for reps in reg.replicas.values():  # its copies go with it
            g = reps.pop(i, None)
            if g is not None:
                self.frames.push(g)
        self.region_changed(reg)

    def region_changed(self, reg: SharedRegion) -> None:
        for vid in reg.sharers:
            r = self.records.get(vid)
            if r is not None:
                r.dirty = True

    # -- the hot working set -----------------------------------------------------------------
    def _hot_add(self, r: VMMemory, j: int, node: int, d: int) -> None:
        i = j % r.nv
        own = r.hot_node[i]
        k = own.get(node, 0) + d
        if k:
            own[node] = k
        else:
            del own[node]
        r.hot_res[i] += d
        k = r.hot_all.get(node, 0) + d
        if k:
            r.hot_all[node] = k
        else:
            del r.hot_all[node]
        r.hot_all_n += d

    def set_window(self, r: VMMemory) -> None:
        """The hot window is the newest ``working_set_fraction`` of ``[0, used)``; both ends
        only move up, so only the chunks crossing them change the hot counts."""
        used = r.used
        hot = max(1, int(r.vm.profile.working_set_fraction * used)) if used else 0
        lo = used - hot
        old_lo, old_hi = r.lo, r.lo + r.hot
        if lo == old_lo and used == old_hi:
            return
        frame = r.frame
        fpn = self.fpn
        for j in range(old_lo, min(lo, old_hi)):
            if frame[j] >= 0:
                self._hot_add(r, j, int(frame[j]) // fpn, -1)
        for j in range(max(old_hi, lo), used):
            if frame[j] >= 0:
                self._hot_add(r, j, int(frame[j]) // fpn, 1)
        r.lo, r.hot = lo, hot
        r.dirty = True

    # -- shared regions ----------------------------------------------------------------------
    def join_region(self, r: VMMemory, n: int) -> SharedRegion:
        """``r`` maps the region of its workload in its first home cell (made, ``n`` chunks,
        if it is the first); its missing chunks are the caller's to touch."""
        key = (r.vm.workload, r.vm.home_cells[0])
        reg = self.regions.get(key)
        if reg is None:
            reg = self.regions[key] = SharedRegion(key, n)
        reg.sharers.append(r.vm.id)
        r.region = reg
        return reg

    def leave_region(self, r: VMMemory) -> None:
        """``r`` unmaps its region: the next sharer takes over its FIFO entries; the last one
        out frees the region, copies and all."""
        reg = r.region
        if reg is None:
            return
        r.region = None
        was_holder = reg.sharers[0] == r.vm.id
        reg.sharers.remove(r.vm.id)
        if reg.sharers:
            nxt = self.records.get(reg.sharers[0])
            if nxt is not None and was_holder:
                now = self.loop.now
                for i in np.flatnonzero(reg.state == RESIDENT).tolist():
                    nxt.fifo.append((-(i + 1), int(reg.gen[i]), now))
            self.region_changed(reg)
            return
        for i in np.flatnonzero(reg.state == RESIDENT).tolist():
            f = int(reg.frame[i])
            reg.state[i] = EMPTY
            self.unmap_shared(reg, i, f)
        for reps in reg.replicas.values():
            for g in reps.values():
                self.frames.push(g)
            reps.clear()
        del self.regions[reg.key]

    # -- frames lost with their cell ---------------------------------------------------------
    def lose(self, f: int) -> None:
        """Frame ``f``'s node failed: whatever it held is gone (the chunk becomes empty)."""
        frames = self.frames
        owner = int(frames.owner[f])
        idx = int(frames.index[f])
        if owner >= 0:
            r = self.records[owner]
            r.state[idx] = EMPTY
            self.unmap_private(r, idx, f)
        elif owner == SHARED:
            reg = next(g for g in self.regions.values() if idx < g.n and g.frame[idx] == f)
            reg.state[idx] = EMPTY
            self.unmap_shared(reg, idx, f)
        else:
            assert owner == REPLICA
            for reg in self.regions.values():
                for reps in reg.replicas.values():
                    if reps.get(idx) == f:
                        del reps[idx]
                        frames.push(f)
                        self.region_changed(reg)
                        return

    def lost_share(self, vm: VM, cells: list[int]) -> float:
        """The share of ``vm``'s resident memory (private and its region) on ``cells``' nodes:
        what a fault of those cells takes from it. Ask before the frames are lost (the bus's
        ``cell_failed`` unmaps them). 0 for a VM with nothing resident."""
        r = self.records.get(vm.id)
        if r is None:
            return 0.0
        reg = r.region
        total = r.resident + (reg.resident if reg is not None else 0)
        if not total:
            return 0.0
        lost = 0
        for c in cells:
            lost += r.cell_count.get(c, 0)
            if reg is not None:
                lost += reg.cell_count.get(c, 0)
        return lost / total

    # -- the VCPUs that touch memory ---------------------------------------------------------
    def toucher(self, r: VMMemory) -> VCPU | None:
        """The VCPU whose turn it is to touch ``r``'s shared memory (round robin, live)."""
        vcpus = r.vm.vcpus
        for _ in range(len(vcpus)):
            v = vcpus[r.rr % len(vcpus)]
            r.rr += 1
            if v.state not in (DONE, LOST):
                return v
        return None

    def owner(self, r: VMMemory, j: int) -> VCPU | None:
        """The VCPU whose working set private chunk ``j`` is in (``j % vcpus``); a live one,
        taking turns, once that one has finished."""
        vcpus = r.vm.vcpus
        if not vcpus:
            return None
        v = vcpus[j % r.nv]
        if v.state in (DONE, LOST):
            return self.toucher(r)
        return v

    def node_of(self, r: VMMemory, v: VCPU | None) -> int:
        """Where ``v`` touches from: its CPU's node (else the first home node)."""
        if v is not None and v.cpu >= 0:
            return self.node_of_cpu[v.cpu]
        return self.frames.first_node(r.vm.home_cells[0])

    # -- the footprint (fault containment) ---------------------------------------------------
    def memory_cells(self, vm: VM) -> set[int]:
        """Cells holding ``vm``'s memory (its own or borrowed), and its home cells."""
        cells = set(vm.home_cells)
        r = self.records.get(vm.id)
        if r is None:
            return cells
        # A count never stays at 0 (``_dec`` drops the key): the keys are the cells.
        cells.update(r.cell_count)
        if r.region is not None:
            cells.update(r.region.cell_count)
        return cells

    def note_cells(self, vm: VM) -> None:
        k = len(self.memory_cells(vm))
        if k > self.cells_max.get(vm.id, 0):
            self.cells_max[vm.id] = k

    def report(self, out: Report) -> None:
        machine_mb = self.frames.frames * self.frames.chunk_mb
        out.metrics["memory_overcommit_ratio"] = self.peak_running_mb / machine_mb
        # containment: cells a VM's memory spanned at most, mean over the VMs that ran
        cm = self.cells_max
        out.metrics["memory_cells_per_vm"] = sum(cm.values()) / len(cm) if cm else 0.0
        out.vm_columns["memory_cells"] = [cm.get(vm.id, 0) for vm in self.vms]


def _dec(counts: dict[int, int], key: int) -> None:
    k = counts[key] - 1
    if k:
        counts[key] = k
    else:
        del counts[key]
