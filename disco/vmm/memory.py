"""Memory: where each VM's memory lives, what remote accesses cost it (PAPER.md, Memory).

**Chunks.** Memory is tracked in frames of ``policy.chunk_mb`` (4 MB [A]: one frame stands for
1024 4 KB pages; the paper machine has 2048). A frame's home node is fixed (frames are numbered
node by node, ``frame // frames_per_node``); per frame, compact numpy arrays hold the owner
(a VM id, ``SHARED``, ``REPLICA`` or ``FREE``), the managing cell (its own cell, or a borrower:
``borrowing.py``) and the owner's chunk index. Free frames sit in per-node stacks keyed by
managing cell. Each VM's guest-physical memory is ``memory_mb / chunk_mb`` chunks with a state
(empty, resident, on disk, guest-freed), a frame and a reference bit (per-VM numpy arrays), and
a second-chance FIFO (``paging.py``). Nothing is O(all chunks) per event: per-VM counters by
node and cell are kept incrementally.

**Guest behaviour** (``WorkloadProfile`` [A] fields), advanced every ``memory_tick_ms``:
``memory_initial_fraction`` of its private memory is touched at boot, then it grows by
``memory_growth_mb_per_s`` (Database); the most recent ``working_set_fraction`` of it is hot;
``free_per_s`` of it is freed by the guest per second and reused ~0.5 s later (Pmake's short
processes); once full and still growing, the guest pages ``guest_paging_mb_per_s`` to its own
paging disk. ``shared_mb`` of guest kernel and binaries is identical across the VMs of one
workload homed in one cell: one copy-on-write region, mapped by each (sharing stays inside a
cell so it never breaks fault containment).

**Placement.** First touch: a new chunk goes on the node of the touching VCPU (the VM's VCPUs
take turns) if that node's cell is a home cell, else on the home cells' nearest node; when the
home cells are exhausted, on memory borrowed from other cells (``borrowing.py``); when every
cell is short, the pager frees memory (``paging.py``).

**Disco's NUMA policy** (``numa_migration`` / ``numa_replication``), every tick, at most
``numa_chunks_per_tick`` copies per VM, each costing ``chunk_mb / copy_mb_per_s`` of monitor
time on a VCPU of the VM (counted in ``chunk_migrations`` / ``chunk_replications``). A copy is
made only when the stall it saves within ``numa_horizon_s`` (5 s [A]) exceeds its copy time --
Disco moved a page only when its miss counters said it was hot enough to pay. Migration moves a
VM's private chunks off nodes none of its VCPUs use (borrowed memory, or memory left behind
when its VCPUs moved) to the node of its VCPUs that gains most; replication copies the shared
region (read-only kernel code and binaries) onto the nodes of its VCPUs. Both only take memory
from a home cell holding more than ``lend_floor_mb`` + one unit free, so they never cause
borrowing; a cell that gets short drops its replicas first.

**Remote-access model** [A]. A VCPU on node ``a`` sends ``kernel_fraction`` of its accesses to
the shared region (kernel code; at a local copy if there is one) and the rest uniformly over its
VM's private resident chunks, so its mean latency is ``L = sum_b share_b * latency_ns(a, b)``
(``Machine.latency_ns``: weighted by hop distance). A workload stalls on memory for
``s = memory_intensity * memory_stall_fraction`` of its native time at local latency, and that
part stretches by ``L / local``: the progress rate is multiplied by ``1 / (1 + s * (L / local -
1))`` (``mon.rate_factor``). With the defaults (stall 0.15, 310 ns local, 550 ns one hop, 650 ns
two) all-remote Database (intensity 0.8) runs ~12 % slower at two hops, Raytrace (0.1) ~1.6 %.
The factor is cached per (VM, node) and recomputed only when the VM's placement changes; its
running VCPUs are then resegmented, once per tick at most. ``remote_access_fraction`` is the
share of accesses to other nodes, weighted by memory intensity, sampled each tick over the
running VCPUs.

**Paging costs time** by stalling: a VCPU that needs a frame being written out, or touches a
paged-out chunk, holds its CPU until the disk finishes (debt, charged as monitor overhead).
Waits overlap: a VCPU already waiting for the disk until ``u`` that waits again until ``t``
is charged ``t - max(now, u)`` more, not ``t - now`` (``disk_wait``); ``paging_stall_s`` sums
those charges.

**Slowdown** (per-VM column): run time over the same VM alone on an idle machine, computed
analytically: ``work_s / (base_rate * f_alone)`` plus the expected guest I/O and idle waits,
where ``f_alone`` is the rate factor of its memory spread evenly over the nodes its VCPUs would
fill in its home cells (first touch, no NUMA copies). Gang and VCPU-to-CPU effects alone are
in ``base_rate``; a VM alone still finishes when its slowest VCPU does, so ~1.0-1.05 is "no
slowdown". Contention, remote or borrowed memory and paging show as more.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import numpy as np

from disco.config import PolicyConfig
from disco.engine import EventLoop, RandomStreams
from disco.hardware import Machine
from disco.vmm.borrowing import Borrowing
from disco.vmm.disk import Disks
from disco.vmm.execution import Execution, ProgressRate
from disco.vmm.paging import EMPTY, FREED, ON_DISK, RESIDENT, Pager
from disco.vmm.reporting import Report
from disco.vmm.state import DONE, LOST, RUNNING, VCPU, VM, MonitorState

FREE: Final = -1  # Final: inlined when compiled (see vmm/state.py)
SHARED: Final = -2
REPLICA: Final = -3
PAGE_BATCH = 4  # [A] chunks the pager frees at once
FREE_LAG_S = 0.5  # [A] a guest-freed chunk is reused about this long after it was freed


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
        self.used = 0  # private chunks [0, used) are in use by the guest
        self.want = 0.0  # guest demand in chunks (grows)
        self.hot = 0  # the last ``hot`` of them are the working set
        self.node_count: dict[int, int] = {}  # resident private frames per node
        self.cell_count: dict[int, int] = {}  # ... per cell (with the region's: dependencies)
        self.fifo: deque[int] = deque()  # private j >= 0; region chunk i as -(i + 1)
        self.resident = 0
        self.on_disk = 0
        self.factor: dict[int, float] = {}  # node -> rate factor (cache)
        self.remote: dict[int, float] = {}  # node -> remote share (cache)
        self.region: SharedRegion | None = None
        self.lenders: list[int] = []  # cells lending to it, in the order they were added
        self.rr = 0  # next VCPU to touch memory
        self.freed: deque[int] = deque()
        self.free_acc = 0.0
        self.gp_acc = 0.0
        self.guest_clock = 0
        self.dirty = True
        self.rng = rng
        self.growth = 0.0

    def resident_total(self) -> int:
        reg = self.region
        if reg is not None and reg.sharers and reg.sharers[0] == self.vm.id:
            return self.resident + reg.resident
        return self.resident


class MemoryManager(ProgressRate):
    """The memory side of the monitor."""

    def __init__(self, p: PolicyConfig, borrows: bool, machine: Machine, state: MonitorState,
                 loop: EventLoop, streams: RandomStreams, execution: Execution) -> None:
        self.loop = loop
        self.streams = streams
        self.state = state
        self.execution = execution
        m = machine
        self.machine = m
        self.p = p
        self.chunk_mb = p.chunk_mb
        self.fpn = fpn = m.memory_per_node_mb // p.chunk_mb
        self.frames = m.nodes * fpn
        self.cell_of_node = [m.cell_of_node(n) for n in range(m.nodes)]
        self.node_of_cpu = [c.node for c in state.cpus]
        self.f_owner = np.full(self.frames, FREE, np.int32)
        self.f_mgr = np.repeat(np.asarray(self.cell_of_node, np.int32), fpn)
        self.f_idx = np.full(self.frames, -1, np.int32)
        self.free: list[dict[int, list[int]]] = [
            {self.cell_of_node[n]: list(range((n + 1) * fpn - 1, n * fpn - 1, -1))}
            for n in range(m.nodes)]
        self.node_free = [fpn] * m.nodes
        self.cell_free = [fpn * m.nodes_per_cell] * m.cells  # own-managed free frames
        self.cell_online = [True] * m.cells
        self.cell_replicas = [0] * m.cells  # replica frames on each cell's nodes
        self.records: dict[int, VMMemory] = {}
        self.regions: dict[tuple[str, int], SharedRegion] = {}
        self.disks = Disks(p)
        self.borrowing = Borrowing(self, p, borrows)
        self.pager = Pager(self, p)
        self.local_ns = m.local_latency_ns
        # latency_ns(a, b) as a table: the NUMA policy and rate factors look it up per tick.
        self.lat = m.latency_table()
        self.stall = p.memory_stall_fraction
        self.tick_s = p.memory_tick_ms * 1e-3
        self.copy_s = p.chunk_mb / p.copy_mb_per_s
        self._order: dict[tuple[int, int], list[int]] = {}
        self.counters = {"chunk_migrations": 0, "chunk_replications": 0}
        self.alloc_failures = 0
        self.stall_s = 0.0
        self.io_until: dict[tuple[int, int], float] = {}  # (VM id, VCPU index) -> disk wait end
        self.running_mb = 0
        self.peak_running_mb = 0
        self.remote_w = 0.0
        self.remote_sum = 0.0
        self.cells_max: dict[int, int] = {}  # VM id -> most cells its memory spanned

    # -- frames ---------------------------------------------------------------------------
    def _nodes_near(self, near: int, cell: int) -> list[int]:
        order = self._order.get((near, cell))
        if order is None:
            m = self.machine
            order = sorted(m.cell_nodes(cell), key=lambda n: (m.hops(near, n), n))
            self._order[(near, cell)] = order
        return order

    def _pop(self, cell: int, mgr: int, near: int) -> int:
        """A free frame on ``cell``'s nodes managed by ``mgr``, nearest ``near``; -1 if none."""
        if mgr == cell and self.cell_free[cell] <= 0:
            return -1
        for n in self._nodes_near(near, cell):
            stack = self.free[n].get(mgr)
            if stack:
                f = stack.pop()
                self.node_free[n] -= 1
                if mgr == cell:
                    self.cell_free[cell] -= 1
                else:
                    self.borrowing.taken(mgr, cell)
                return f
        return -1

    def _pop_node(self, n: int, cell: int) -> int:
        """A free frame of ``cell``'s own on node ``n`` exactly; -1 if none."""
        stack = self.free[n].get(cell)
        if not stack:
            return -1
        self.node_free[n] -= 1
        self.cell_free[cell] -= 1
        return stack.pop()

    def _push(self, f: int) -> None:
        """Frame ``f`` is free again, back with its manager."""
        n = f // self.fpn
        cell = self.cell_of_node[n]
        mgr = int(self.f_mgr[f])
        if self.f_owner[f] == REPLICA:
            self.cell_replicas[cell] -= 1
        self.f_owner[f] = FREE
        self.f_idx[f] = -1
        self.free[n].setdefault(mgr, []).append(f)
        self.node_free[n] += 1
        if mgr == cell:
            self.cell_free[cell] += 1
        else:
            self.borrowing.returned(mgr, cell)

    def take(self, r: VMMemory, near: int) -> int:
        """A frame for VM ``r`` touched from node ``near``: home cells, then borrowed; -1."""
        home = r.vm.home_cells
        cells = home
        near_cell = self.cell_of_node[near]
        if near_cell in home and home[0] != near_cell:
            cells = (near_cell,) + tuple(c for c in home if c != near_cell)
        trigger = self.borrowing.trigger
        for cell in cells:
            if not self.cell_online[cell]:
                continue
            f = self._pop(cell, cell, near if near_cell == cell else self._first_node(cell))
            if f >= 0:
                if self.cell_free[cell] < trigger:
                    self.short(cell, r)
                return f
        for cell in cells:
            self.short(cell, r)
        return self.borrowing.take(r, near)

    def _first_node(self, cell: int) -> int:
        return cell * self.machine.nodes_per_cell

    def short(self, cell: int, r: VMMemory) -> None:
        """``cell``'s own free fell below the trigger: drop replicas, then borrow."""
        if self.cell_free[cell] < self.borrowing.trigger:
            self._drop_replicas(cell)
        if self.cell_free[cell] < self.borrowing.trigger:
            self.borrowing.replenish(cell, r)

    def get_frame(self, r: VMMemory, near: int) -> int:
        """``take``, paging if every cell is short; the wait for the disk is charged."""
        f = self.take(r, near)
        if f < 0:
            until = self.pager.make_room(r, PAGE_BATCH)
            if until >= 0.0:
                self.pager.wait(r, until)
                f = self.take(r, near)
        if f < 0:
            self.alloc_failures += 1
        return f

    # -- mapping ------------------------------------------------------------------------
    def map_private(self, r: VMMemory, j: int, f: int, enqueue: bool = True) -> None:
        """Chunk ``j`` of ``r`` now lives in frame ``f``; ``enqueue``: it (re)enters the FIFO
        (a copy to another frame keeps its place)."""
        self.f_owner[f] = r.vm.id
        self.f_idx[f] = j
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
        holder = reg is not None and reg.sharers and reg.sharers[0] == r.vm.id
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
        self._push(f)

    def map_shared(self, reg: SharedRegion, i: int, f: int) -> None:
        self.f_owner[f] = SHARED
        self.f_idx[f] = i
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
        self._region_changed(reg)

    def unmap_shared(self, reg: SharedRegion, i: int, f: int) -> None:
        reg.frame[i] = -1
        n = f // self.fpn
        _dec(reg.node_count, n)
        _dec(reg.cell_count, self.cell_of_node[n])
        reg.resident -= 1
        self._push(f)
        for reps in reg.replicas.values():  # its copies go with it
            g = reps.pop(i, None)
            if g is not None:
                self._push(g)
        self._region_changed(reg)

    def _region_changed(self, reg: SharedRegion) -> None:
        for vid in reg.sharers:
            r = self.records.get(vid)
            if r is not None:
                r.dirty = True

    # -- the VCPU that touches memory ---------------------------------------------------
    def toucher(self, r: VMMemory) -> VCPU | None:
        vcpus = r.vm.vcpus
        for _ in range(len(vcpus)):
            v = vcpus[r.rr % len(vcpus)]
            r.rr += 1
            if v.state not in (DONE, LOST):
                return v
        return None

    def node_of(self, r: VMMemory, v: VCPU | None) -> int:
        if v is not None and v.cpu >= 0:
            return self.node_of_cpu[v.cpu]
        return self._first_node(r.vm.home_cells[0])

    def charge(self, v: VCPU, seconds: float) -> None:
        """Monitor time ``v`` must spend before progressing (copies, disk waits)."""
        if seconds <= 0.0 or v.state in (DONE, LOST):
            return
        self.execution.charge(v, seconds)

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
            self.charge(v, until - start)

    def touch(self, r: VMMemory, j: int) -> bool:
        """First touch (or reuse after a drop) of private chunk ``j``."""
        v = self.toucher(r)
        f = self.get_frame(r, self.node_of(r, v))
        if f < 0:
            return False
        self.map_private(r, j, f)
        r.ref[j] = 1
        return True

    def page_in(self, r: VMMemory, j: int) -> bool:
        """Chunk ``j`` is on disk and touched: read it into a new frame; the VCPU waits."""
        v = self.toucher(r)
        f = self.get_frame(r, self.node_of(r, v))
        if f < 0:
            return False
        until = self.disks.request(self.disks.disk_of(r.vm.id), self.loop.now,
                                   self.chunk_mb, write=False)
        self.pager.pages_in += 1
        r.on_disk -= 1
        self.map_private(r, j, f)
        r.ref[j] = 1
        if v is not None:
            self.disk_wait(v, until)
        return True

    def _shared_in(self, r: VMMemory, reg: SharedRegion, i: int) -> bool:
        v = self.toucher(r)
        f = self.get_frame(r, self.node_of(r, v))
        if f < 0:
            return False
        if reg.state[i] == ON_DISK:
            until = self.disks.request(self.disks.disk_of(r.vm.id), self.loop.now,
                                       self.chunk_mb, write=False)
            self.pager.pages_in += 1
            reg.on_disk -= 1
            if v is not None:
                self.disk_wait(v, until)
        self.map_shared(reg, i, f)
        return True

    # -- VM life ------------------------------------------------------------------------
    def on_vm_arrival(self, vm: VM) -> None:
        p = vm.profile
        chunk = self.chunk_mb
        total = max(1, -(-vm.memory_mb // chunk))
        sh = min(total, -(-p.shared_mb // chunk)) if p.shared_mb > 0 else 0
        r = VMMemory(vm, total - sh, self.streams.get(f"memory/{vm.id}"))
        r.growth = p.memory_growth_mb_per_s / chunk
        self.records[vm.id] = r
        self.running_mb += vm.memory_mb
        self.peak_running_mb = max(self.peak_running_mb, self.running_mb)
        if sh:
            self._attach_region(r, sh)
        r.want = p.memory_initial_fraction * r.n
        self._grow(r)
        self._refresh(r)

    def _attach_region(self, r: VMMemory, sh: int) -> None:
        key = (r.vm.workload, r.vm.home_cells[0])
        reg = self.regions.get(key)
        if reg is None:
            reg = self.regions[key] = SharedRegion(key, sh)
        reg.sharers.append(r.vm.id)
        r.region = reg
        for i in range(reg.n):
            if reg.state[i] != RESIDENT and not self._shared_in(r, reg, i):
                break
        self._region_changed(reg)

    def _detach_region(self, r: VMMemory) -> None:
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
            self._region_changed(reg)
            return
        for i in np.flatnonzero(reg.state == RESIDENT).tolist():
            f = int(reg.frame[i])
            reg.state[i] = EMPTY
            self.unmap_shared(reg, i, f)
        for reps in reg.replicas.values():
            for g in reps.values():
                self._push(g)
            reps.clear()
        del self.regions[reg.key]

    def on_vm_exit(self, vm: VM) -> None:
        r = self.records.get(vm.id)
        if r is None:
            return
        self._note_cells(vm)
        del self.records[vm.id]
        self.running_mb -= vm.memory_mb
        for j in np.flatnonzero(r.frame >= 0).tolist():
            f = int(r.frame[j])
            r.state[j] = EMPTY
            self.unmap_private(r, j, f)
        self._detach_region(r)
        self.borrowing.settle()

    def on_vm_migrated(self, vm: VM, old_cells: tuple[int, ...],
                       new_cells: tuple[int, ...]) -> None:
        """A whole-VM migration copied its memory: move every frame into the new cells."""
        r = self.records.get(vm.id)
        if r is None:
            return
        r.lenders = []
        for j in np.flatnonzero(r.frame >= 0).tolist():
            f = int(r.frame[j])
            if self.cell_of_node[f // self.fpn] in new_cells:
                continue
            g = self.take(r, self.node_of(r, self.toucher(r)))
            if g < 0:
                continue  # stays behind: the VM still depends on that cell
            state = int(r.state[j])
            self.unmap_private(r, j, f)
            self.map_private(r, j, g, enqueue=False)
            r.state[j] = state
        if r.region is not None and r.region.key[1] not in new_cells:
            sh = r.region.n
            self._detach_region(r)
            self._attach_region(r, sh)
        self.borrowing.settle()
        self._refresh(r)

    def on_cell_failed(self, cell: int) -> None:
        """A cell failed: the memory homed on its nodes is lost and goes offline; loans it
        made or held are cancelled. VMs still running keep going with those chunks empty."""
        m = self.machine
        self.cell_online[cell] = False
        for n in m.cell_nodes(cell):
            lo, hi = n * self.fpn, (n + 1) * self.fpn
            owners = self.f_owner[lo:hi]
            for k in np.flatnonzero(owners != FREE).tolist():
                self._lose(lo + k)
        bw = self.borrowing
        # Loans the failed cell made: the reserves vanish with it.
        for b, pools in bw.loan_free.items():
            if pools.get(cell):
                bw.give_back(b, cell, pools[cell])
        # Loans it held: unused reserves go back, frames in use become the lender's own.
        pools = bw.loan_free.get(cell, {})
        for lender, free in list(pools.items()):
            if free:
                bw.give_back(cell, lender, free)
        for lender in list(bw.lent.get(cell, {})):
            for n in m.cell_nodes(lender):
                lo, hi = n * self.fpn, (n + 1) * self.fpn
                for k in np.flatnonzero(self.f_mgr[lo:hi] == cell).tolist():
                    self.f_mgr[lo + k] = lender
                    bw.unlend(cell, lender)
        for n in m.cell_nodes(cell):
            # Keep the books (free = total) with the frames held by their own cell, offline.
            for mgr, stack in list(self.free[n].items()):
                if mgr != cell and stack:
                    bw.loan_free[mgr][cell] -= len(stack)
                    bw.lent[mgr][cell] -= len(stack)
                    bw.on_loan -= len(stack)
                    for f in stack:
                        self.f_mgr[f] = cell
                    self.free[n].setdefault(cell, []).extend(stack)
                    stack.clear()
        self.cell_free[cell] = 0
        for r in self.records.values():
            if cell in r.lenders:
                r.lenders.remove(cell)

    def _lose(self, f: int) -> None:
        owner = int(self.f_owner[f])
        idx = int(self.f_idx[f])
        if owner >= 0:
            r = self.records[owner]
            r.state[idx] = EMPTY
            self.unmap_private(r, idx, f)
        elif owner == SHARED:
            reg = next(g for g in self.regions.values() if idx < g.n and g.frame[idx] == f)
            reg.state[idx] = EMPTY
            self.unmap_shared(reg, idx, f)
        else:  # a replica
            for reg in self.regions.values():
                for reps in reg.replicas.values():
                    if reps.get(idx) == f:
                        del reps[idx]
                        self._push(f)
                        self._region_changed(reg)
                        return

    def on_cell_repaired(self, cell: int) -> None:
        self.cell_online[cell] = True
        self.cell_free[cell] = sum(len(self.free[n].get(cell, ()))
                                   for n in self.machine.cell_nodes(cell))

    # -- the guest, every tick ----------------------------------------------------------
    def tick(self) -> None:
        dt = self.tick_s
        busy_after = self.loop.now + dt
        free_at = self.disks.free_at
        disk_of = self.disks.disk_of
        for r in list(self.records.values()):
            vm = r.vm
            if vm.status != "running":
                continue
            # While its paging disk is backed up, its VCPUs are stalled on it: the guest makes
            # no new demands (growth, churn, faults) until the queue drains.
            if free_at[disk_of(vm.id)] <= busy_after:
                if r.growth and r.want < r.n:
                    r.want = min(float(r.n), r.want + r.growth * dt)
                self._grow(r)
                self._guest(r, dt)
                if r.on_disk:
                    self._fault_hot(r)
                self._numa(r)
            if r.dirty:
                self._refresh(r)
            self._note_cells(vm)
        self.borrowing.settle()
        self._sample(dt)
        self.loop.schedule(dt, self.tick)

    def _grow(self, r: VMMemory) -> None:
        target = min(r.n, int(r.want))
        while r.used < target:
            if r.state[r.used] == EMPTY and not self.touch(r, r.used):
                break
            r.used += 1
        r.hot = int(r.vm.profile.working_set_fraction * r.used)

    def _guest(self, r: VMMemory, dt: float) -> None:
        p = r.vm.profile
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
                    if self.pager.skip_freed:  # the monitor learns the data is dead: drop it
                        r.state[j] = EMPTY
                        r.on_disk -= 1
                        self.pager.avoided_free_reads += 1  # its reuse reads nothing back
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
                    if not self.touch(r, j):
                        r.freed.appendleft(j)
                        break
                elif st == ON_DISK:  # written although free: read back (no skip_freed)
                    if not self.page_in(r, j):
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
        pager = self.pager
        if pager.virtual_disk:
            pager.avoided_double += 1  # remap the monitor's copy to the guest's disk
            r.state[j] = EMPTY
            r.on_disk -= 1
            self.touch(r, j)
            return
        # Double paging: read the chunk back, then the guest writes it to its disk.
        if self.page_in(r, j):
            until = self.disks.request(self.disks.disk_of(r.vm.id), self.loop.now,
                                       self.chunk_mb, write=True)
            self.pager.wait(r, until)

    def _fault_hot(self, r: VMMemory) -> None:
        lo, hi = r.used - r.hot, r.used
        for j in (np.flatnonzero(r.state[lo:hi] == ON_DISK) + lo).tolist():
            if not self.page_in(r, j):
                break
        reg = r.region
        if reg is not None and reg.on_disk:
            for i in np.flatnonzero(reg.state == ON_DISK).tolist():
                if not self._shared_in(r, reg, i):
                    break

    # -- Disco's NUMA policy ------------------------------------------------------------
    def _numa(self, r: VMMemory) -> None:
        """Disco's NUMA policy, one VM: a move or copy is made only when the stall it saves
        within ``numa_horizon_s`` exceeds its copy time."""
        p = self.p
        budget = p.numa_chunks_per_tick
        if budget <= 0 or not (p.numa_migration or p.numa_replication):
            return
        vm = r.vm
        node_of_cpu = self.node_of_cpu
        vnodes: dict[int, int] = {}
        for v in vm.vcpus:
            if v.cpu >= 0 and v.state not in (DONE, LOST):
                n = node_of_cpu[v.cpu]
                vnodes[n] = vnodes.get(n, 0) + 1
        if not vnodes:
            return
        s = vm.profile.memory_intensity * self.stall
        reg = r.region
        w_sh = vm.profile.kernel_fraction if reg is not None and reg.resident and r.resident \
            else (1.0 if r.resident == 0 else 0.0)
        # Only into plenty (above the lend floor), so copies never provoke borrowing.
        roomy = self.borrowing.floor + self.borrowing.unit
        cell_of_node = self.cell_of_node
        cell_free = self.cell_free
        home = vm.home_cells
        local = self.local_ns
        if p.numa_migration and r.resident and w_sh < 1.0:
            per_chunk = s * (1.0 - w_sh) / r.resident
            rows: list[tuple[list[float], int]] | None = None  # (latencies from a, VCPUs on a)
            best = None
            for src in r.node_count:
                if src in vnodes:  # memory its VCPUs use locally stays: no ping-pong
                    continue
                if rows is None:
                    rows = [(self.lat[a], k) for a, k in vnodes.items()]
                for dst in vnodes:
                    cell = cell_of_node[dst]
                    if dst == src or cell not in home or cell_free[cell] <= roomy \
                            or not self.free[dst].get(cell):
                        continue
                    # Stall (relative to local latency) saved per second by the move.
                    gain = per_chunk * (sum([k * (la[src] - la[dst]) for la, k in rows]) / local)
                    if best is None or gain > best[0]:
                        best = (gain, src, dst)
            if best is not None and best[0] * p.numa_horizon_s > self.copy_s:
                _, src, dst = best
                lo, hi = src * self.fpn, (src + 1) * self.fpn
                frames = r.frame
                cell = cell_of_node[dst]
                cand = np.flatnonzero((frames >= lo) & (frames < hi))
                hot_lo = r.used - r.hot  # hot chunks first
                cand = np.concatenate((cand[cand >= hot_lo], cand[cand < hot_lo]))
                for j in cand[:budget].tolist():
                    if cell_free[cell] <= roomy:
                        break
                    g = self._pop_node(dst, cell)
                    if g < 0:
                        break
                    f = int(frames[j])
                    state = int(r.state[j])
                    self.unmap_private(r, j, f)
                    self.map_private(r, j, g, enqueue=False)
                    r.state[j] = state
                    self.counters["chunk_migrations"] += 1
                    budget -= 1
                    self._copy_cost(r, dst)
        if p.numa_replication and reg is not None and reg.resident and budget > 0:
            per_chunk = s * w_sh / reg.resident
            fpn = self.fpn
            chunks: list[tuple[int, int]] | None = None  # (chunk, its node), made on demand
            for n, k in vnodes.items():
                cell = cell_of_node[n]
                if cell not in home:
                    continue
                reps = reg.replicas.setdefault(n, {})
                if len(reps) + reg.node_count.get(n, 0) >= reg.resident:
                    continue  # every chunk already has a copy here
                if budget <= 0 or cell_free[cell] <= roomy:
                    continue
                lat_n = self.lat[n]
                # Does a copy from a source node pay? Decided per node holding region chunks
                # (``node_count`` counts every resident chunk's node): when none does, the usual
                # case, no chunk is scanned.
                pays = {x: not per_chunk * k * (lat_n[x] - local) / local * p.numa_horizon_s
                        <= self.copy_s for x in reg.node_count}
                if not any(pays.values()):
                    continue
                if chunks is None:  # copies change neither state nor frames of the region
                    idx = (reg.state == RESIDENT).nonzero()[0].tolist()
                    frame = reg.frame.tolist()
                    chunks = [(i, frame[i] // fpn) for i in idx]
                for i, src in chunks:
                    if budget <= 0 or cell_free[cell] <= roomy:
                        break
                    if src == n or i in reps or not pays[src]:
                        continue
                    g = self._pop_node(n, cell)
                    if g < 0:
                        break
                    self.f_owner[g] = REPLICA
                    self.cell_replicas[cell] += 1
                    self.f_idx[g] = i
                    reps[i] = g
                    self.counters["chunk_replications"] += 1
                    budget -= 1
                    self._copy_cost(r, n)
                    self._region_changed(reg)

    def _copy_cost(self, r: VMMemory, node: int) -> None:
        for v in r.vm.vcpus:
            if v.cpu >= 0 and self.node_of_cpu[v.cpu] == node and v.state not in (DONE, LOST):
                self.charge(v, self.copy_s)
                return
        toucher = self.toucher(r)
        if toucher is not None:
            self.charge(toucher, self.copy_s)

    def _drop_replicas(self, cell: int) -> None:
        if not self.cell_replicas[cell]:
            return
        for reg in self.regions.values():
            for node, reps in reg.replicas.items():
                if self.cell_of_node[node] == cell and reps:
                    for g in reps.values():
                        self._push(g)
                    reps.clear()
                    self._region_changed(reg)

    # -- the rate factor ----------------------------------------------------------------
    def _refresh(self, r: VMMemory) -> None:
        """Placement changed: drop the cached factors and re-rate running VCPUs (once)."""
        if not r.dirty:
            return
        r.dirty = False
        r.factor.clear()
        r.remote.clear()
        self.execution.rerate(r.vm)

    def _compute(self, r: VMMemory, node: int) -> float:
        """Mean latency and remote share seen from ``node``: ``kernel_fraction`` of the
        accesses go to the shared region (kernel code), the rest to private chunks."""
        lat = self.lat[node]
        priv = r.resident
        w_sh = 0.0
        reg = r.region
        if reg is not None and reg.resident:
            w_sh = r.vm.profile.kernel_fraction if priv else 1.0
        mean = 0.0
        remote = 0.0
        if priv and w_sh < 1.0:
            acc = 0.0
            for n, k in r.node_count.items():
                acc += k * lat[n]
            w = (1.0 - w_sh) / priv
            mean += w * acc
            remote += w * (priv - r.node_count.get(node, 0))
        if w_sh > 0.0:
            assert reg is not None
            here = reg.node_count.get(node, 0)
            reps = len(reg.replicas.get(node, ()))
            acc = 0.0
            for n, k in reg.node_count.items():
                if n != node:
                    acc += k * lat[n]
            far = reg.resident - here  # chunks whose primary copy is elsewhere ...
            scale = (far - reps) / far if far else 0.0  # ... and not replicated here
            w = w_sh / reg.resident
            mean += w * ((here + reps) * self.local_ns + acc * scale)
            remote += w * (far - reps)
        if priv == 0 and w_sh == 0.0:
            mean = self.local_ns
        f = r.factor[node] = self._factor_for(r.vm, mean)
        r.remote[node] = remote
        return f

    def factor(self, v: VCPU) -> float:
        r = self.records.get(v.vm.id)
        cpu = v.cpu
        if r is None or cpu < 0:
            return 1.0
        node = self.node_of_cpu[cpu]
        f = r.factor.get(node)
        if f is None:
            f = self._compute(r, node)
        return f

    def _alone_factor(self, vm: VM) -> float:
        """Rate factor of ``vm`` alone on an idle machine: VCPUs fill its home cells' nodes
        in order, memory spread evenly over those nodes."""
        m = self.machine
        k = min(-(-len(vm.vcpus) // m.cpus_per_node), m.nodes)
        first = self._first_node(vm.home_cells[0]) if vm.home_cells else 0
        nodes = [(first + i) % m.nodes for i in range(k)]
        mean = sum(self.lat[a][b] for a in nodes for b in nodes) / (k * k)
        return self._factor_for(vm, mean)

    def _factor_for(self, vm: VM, mean_ns: float) -> float:
        """The stall model: progress rate at mean memory latency ``mean_ns`` (1 when local)."""
        s = vm.profile.memory_intensity * self.stall
        return 1.0 / (1.0 + s * (mean_ns / self.local_ns - 1.0))

    def _sample(self, dt: float) -> None:
        node_of_cpu = self.node_of_cpu
        for r in self.records.values():
            w = r.vm.profile.memory_intensity * dt
            if w <= 0.0:
                continue
            remote = r.remote
            for v in r.vm.vcpus:
                if v.state == RUNNING:
                    node = node_of_cpu[v.cpu]
                    rem = remote.get(node)
                    if rem is None:
                        self._compute(r, node)
                        rem = remote[node]
                    self.remote_w += w
                    self.remote_sum += w * rem

    # -- dependencies (fault containment) -----------------------------------------------
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

    def _note_cells(self, vm: VM) -> None:
        k = len(self.memory_cells(vm))
        if k > self.cells_max.get(vm.id, 0):
            self.cells_max[vm.id] = k

    # -- results ------------------------------------------------------------------------
    def start(self) -> None:
        self.loop.schedule(self.tick_s, self.tick)

    def report(self, out: Report) -> None:
        out.metrics.update(self.metrics())
        out.vm_columns.update(self.vm_columns())

    def metrics(self) -> dict[str, float | int]:
        pg = self.pager
        bw = self.borrowing
        machine_mb = self.frames * self.chunk_mb
        return {
            "remote_access_fraction": self.remote_sum / self.remote_w if self.remote_w else 0.0,
            "memory_borrowed_mb": bw.peak_on_loan * self.chunk_mb,
            "borrow_operations": bw.operations,
            "chunk_migrations": self.counters["chunk_migrations"],
            "chunk_replications": self.counters["chunk_replications"],
            "pages_out": pg.pages_out,
            "pages_in": pg.pages_in,
            "disk_writes_avoided_free": pg.avoided_free,
            "disk_writes_avoided_shared": pg.avoided_shared,
            "disk_writes_avoided_double": pg.avoided_double,
            "disk_reads_avoided_free": pg.avoided_free_reads,
            "memory_overcommit_ratio": self.peak_running_mb / machine_mb,
            "disk_writes": self.disks.writes,
            "disk_reads": self.disks.reads,
            "paging_stall_s": self.stall_s,
            "memory_alloc_failures": self.alloc_failures,
            # containment: cells a VM's memory spanned at most, mean over the VMs that ran
            "memory_cells_per_vm": (sum(self.cells_max.values()) / len(self.cells_max)
                                    if self.cells_max else 0.0),
        }

    def vm_columns(self) -> dict[str, list]:
        """Per VM: ``slowdown``, run time over the analytic run time alone on an idle machine;
        ``memory_cells``, the most cells its memory (own or borrowed) spanned."""
        slow: list[float] = []
        cells = [self.cells_max.get(vm.id, 0) for vm in self.state.vms]
        for vm in self.state.vms:
            if vm.status != "done":
                slow.append(float("nan"))
                continue
            p = vm.profile
            alone = self._alone_factor(vm)
            waits = vm.work_s * (p.io_prob * p.io_ms + p.idle_prob * p.idle_ms) / p.burst_ms
            ideal = vm.work_s / (vm.base_rate * alone) + waits
            slow.append((vm.finish_s - vm.arrival_s) / ideal)
        return {"slowdown": slow, "memory_cells": cells}


def _draws(rng: np.random.Generator, high: int, k: int) -> list[int]:
    """``rng.integers(0, high, size=k).tolist()``, cheaper for the usual k of 0 or 1: an empty
    draw consumes nothing, and a scalar draw takes the same value from the stream (numpy's
    bounded draws are element by element either way; ``tests/test_memory_draws.py``)."""
    if k == 1:
        return [int(rng.integers(0, high))]
    if k == 0:
        return []
    return rng.integers(0, high, size=k).tolist()


def _dec(counts: dict[int, int], key: int) -> None:
    k = counts[key] - 1
    if k:
        counts[key] = k
    else:
        del counts[key]


__all__ = ["EMPTY", "FREED", "ON_DISK", "RESIDENT", "MemoryManager", "SharedRegion",
           "VMMemory"]
