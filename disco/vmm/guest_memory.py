"""Guest memory: each VM's guest-physical memory mapped onto frames, its FIFO, shared regions.

Each VM's memory is ``memory_mb / chunk_mb`` chunks: ``shared_mb`` of guest kernel and binaries
in a shared region, the rest private. A private chunk has a state (empty, resident, on disk,
guest-freed), a frame and a reference bit (per-VM numpy arrays), and every resident chunk sits
in the VM's second-chance FIFO (``paging.py``). The guest kernel and binaries are identical
across the VMs of one workload homed in one cell: one copy-on-write region, mapped by each
sharer (sharing stays inside a cell so it never breaks fault containment); its first sharer
holds the region's chunks in its FIFO.

Per VM, resident frames are counted per node and per cell, incrementally, so nothing is
O(all chunks) per event; the cells are the VM's memory footprint (``memory_cells``), which the
containment rule asks.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import numpy as np

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

    __slots__ = ("key", "n", "frame", "state", "on_disk", "sharers", "node_count",
                 "cell_count", "replicas", "resident")

    def __init__(self, key: tuple[str, int], n: int) -> None:
        self.key = key
        self.n = n
        self.frame = np.full(n, -1, np.int32)
        self.state = np.zeros(n, np.int8)
        self.on_disk = 0
        self.sharers: list[int] = []  # VM ids, in arrival order; the first holds the FIFO
        self.node_count: dict[int, int] = {}
        self.cell_count: dict[int, int] = {}
        self.replicas: dict[int, dict[int, int]] = {}  # node -> chunk -> replica frame
        self.resident = 0


class VMMemory:
    """One VM's guest-physical memory: ``n`` private chunks plus its shared region."""

    __slots__ = ("vm", "n", "state", "frame", "ref", "used", "want", "hot", "node_count",
                 "cell_count", "fifo", "resident", "on_disk", "factor", "remote", "region",
                 "lenders", "rr", "freed", "free_acc", "gp_acc", "guest_clock", "dirty", "rng",
                 "growth")

    def __init__(self, vm: VM, n: int, rng: np.random.Generator) -> None:
        self.vm = vm
        self.n = n
        self.state = np.zeros(n, np.int8)
        self.frame = np.full(n, -1, np.int32)
        self.ref = np.zeros(n, np.int8)
        self.node_count: dict[int, int] = {}  # resident private frames per node
        self.cell_count: dict[int, int] = {}  # ... per cell (with the region's: dependencies)
        self.fifo: deque[int] = deque()  # private j >= 0; region chunk i as -(i + 1)
        self.resident = 0
        self.on_disk = 0
        self.region: SharedRegion | None = None
        self.rr = 0  # next VCPU to touch memory
        # The guest's own behaviour (guest_behaviour.py), on its own stream ``memory/<vm>``.
        self.used = 0  # private chunks [0, used) are in use by the guest
        self.want = 0.0  # guest demand in chunks (grows)
        self.hot = 0  # the last ``hot`` of them are the working set
        self.growth = 0.0  # chunks per second
        self.freed: deque[int] = deque()
        self.free_acc = 0.0
        self.gp_acc = 0.0
        self.guest_clock = 0
        self.rng = rng
        # The remote-access model's cache (remote_access.py): placement changed since
        # (``dirty``), and per node the rate factor and the remote share.
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


class GuestMemory:
    def __init__(self, frames: FrameStore, cpus: list[CPU], vms: list[VM]) -> None:
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
        (a copy to another frame keeps its place)."""
        self.frames.assign(f, r.vm.id, j)
        r.frame[j] = f
        r.state[j] = RESIDENT
        n = f // self.fpn
        c = self.cell_of_node[n]
        r.node_count[n] = r.node_count.get(n, 0) + 1
        r.cell_count[c] = r.cell_count.get(c, 0) + 1
        r.resident += 1
        r.dirty = True
        if enqueue:
            r.fifo.append(j)
            if len(r.fifo) > 2 * r.resident + 64:
                self._compact_fifo(r)

    def _compact_fifo(self, r: VMMemory) -> None:
        """Drop stale and duplicate FIFO entries (a chunk re-entering leaves its old entry),
        keeping each chunk's most recent place. Amortised O(1) per entry."""
        seen: set[int] = set()
        keep: list[int] = []
        reg = r.region
        holder = r.holds_region()
        for e in reversed(r.fifo):
            if e in seen:
                continue
            if e >= 0:
                if r.state[e] not in (RESIDENT, FREED):
                    continue
            elif not holder or reg.state[-e - 1] != RESIDENT:  # type: ignore[union-attr]
                continue
            seen.add(e)
            keep.append(e)
        keep.reverse()
        r.fifo = deque(keep)

    def unmap_private(self, r: VMMemory, j: int, f: int) -> None:
        r.frame[j] = -1
        n = f // self.fpn
        c = self.cell_of_node[n]
        _dec(r.node_count, n)
        _dec(r.cell_count, c)
        r.resident -= 1
        r.dirty = True
        self.frames.push(f)

    def move_private(self, r: VMMemory, j: int, g: int) -> None:
        """Chunk ``j`` is copied to frame ``g`` (its state and FIFO place kept)."""
        f = int(r.frame[j])
        state = int(r.state[j])
        self.unmap_private(r, j, f)
        self.map_private(r, j, g, enqueue=False)
        r.state[j] = state

    def map_shared(self, reg: SharedRegion, i: int, f: int) -> None:
        self.frames.assign(f, SHARED, i)
        reg.frame[i] = f
        reg.state[i] = RESIDENT
        n = f // self.fpn
        reg.node_count[n] = reg.node_count.get(n, 0) + 1
        c = self.cell_of_node[n]
        reg.cell_count[c] = reg.cell_count.get(c, 0) + 1
        reg.resident += 1
        holder = self.records.get(reg.sharers[0]) if reg.sharers else None
        if holder is not None:
            holder.fifo.append(-(i + 1))
        self.region_changed(reg)

    def unmap_shared(self, reg: SharedRegion, i: int, f: int) -> None:
        reg.frame[i] = -1
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
                for i in np.flatnonzero(reg.state == RESIDENT).tolist():
                    nxt.fifo.append(-(i + 1))
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

    # -- the VCPU that touches memory --------------------------------------------------------
    def toucher(self, r: VMMemory) -> VCPU | None:
        """The VCPU whose turn it is to touch ``r``'s memory (round robin, live ones)."""
        vcpus = r.vm.vcpus
        for _ in range(len(vcpus)):
            v = vcpus[r.rr % len(vcpus)]
            r.rr += 1
            if v.state not in (DONE, LOST):
                return v
        return None

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

    def lost_share(self, vm: VM, cells: list[int]) -> float:
        """Share of ``vm``'s resident memory, private and its shared region's, on ``cells``
        (the lazy kill's touch rate, ``recovery.py``; 0 with nothing resident)."""
        r = self.records.get(vm.id)
        if r is None:
            return 0.0
        lost = sum(r.cell_count.get(c, 0) for c in cells)
        total = r.resident
        reg = r.region
        if reg is not None:
            lost += sum(reg.cell_count.get(c, 0) for c in cells)
            total += reg.resident
        return lost / total if total else 0.0

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
