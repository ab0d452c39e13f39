"""Disco's NUMA policy: page migration and replication (PAPER.md, Memory management).

Every memory tick (``numa_migration`` / ``numa_replication``), at most ``numa_chunks_per_tick``
copies per VM, each costing ``chunk_mb / copy_mb_per_s`` of monitor time on a VCPU of the VM
(counted in ``chunk_migrations`` / ``chunk_replications``). A copy is made only when the stall
it saves within ``numa_horizon_s`` exceeds its copy time: Disco moved a page only when its miss
counters said it was hot enough to pay.

*Migration* follows each VCPU's own working set (``guest_memory.py``: per-VCPU locality [A]):
for a VCPU that has stayed on its node for ``numa_settle_ms`` [A] (a VCPU the balancers are
moving about is not yet hot anywhere), the hot chunks it owns on other nodes are moved to its
node, the source that gains most first; the gain weighs its own accesses to them
(``private_access_fraction``) and its siblings' shared ones. *Replication* copies the shared
region (read-only kernel code and binaries) onto the nodes of its VCPUs. Both only take memory
from a home cell holding more than ``roomy`` frames free (the lend floor plus one borrowing
unit), so they never cause borrowing; a cell that gets short drops its replicas first
(``drop_replicas``).
"""

from __future__ import annotations

import numpy as np

from disco.config import PolicyConfig
from disco.engine import EventLoop
from disco.vmm.execution import Execution
from disco.vmm.frames import FrameStore
from disco.vmm.guest_memory import RESIDENT, GuestMemory, VMMemory
from disco.vmm.remote_access import RemoteAccessCost
from disco.vmm.reporting import Report
from disco.vmm.state import CPU, DONE, LOST, VCPU, VM


class NumaPolicy:
    def __init__(self, p: PolicyConfig, loop: EventLoop, frames: FrameStore, guest: GuestMemory,
                 remote: RemoteAccessCost, execution: Execution, roomy: int) -> None:
        self.loop = loop
        self.frames = frames
        self.guest = guest
        self.execution = execution
        self.migration = p.numa_migration
        self.replication = p.numa_replication
        self.chunks_per_tick = p.numa_chunks_per_tick
        self.horizon_s = p.numa_horizon_s
        self.copy_s = p.chunk_mb / p.copy_mb_per_s
        self.settle_s = p.numa_settle_ms * 1e-3
        self.stall = p.memory_stall_fraction
        self.lat = remote.lat
        self.local_ns = remote.local_ns
        self.roomy = roomy  # only into a home cell with more free than this
        self.moved_at: dict[tuple[int, int], float] = {}  # (VM id, VCPU) -> last node change
        self.migrations = 0
        self.replications = 0

    def report(self, out: Report) -> None:
        out.metrics["chunk_migrations"] = self.migrations
        out.metrics["chunk_replications"] = self.replications

    def on_vcpu_moved(self, v: VCPU, src: CPU, dst: CPU) -> None:
        """(bus) A VCPU that changes node is in transit: its memory waits until it settles."""
        if src.node != dst.node:
            self.moved_at[(v.vm.id, v.index)] = self.loop.now

    def forget(self, vm: VM) -> None:
        for v in vm.vcpus:
            self.moved_at.pop((vm.id, v.index), None)

    def step(self, r: VMMemory) -> None:
        """One VM, one tick: a move or copy is made only when the stall it saves within
        ``numa_horizon_s`` exceeds its copy time."""
        budget = self.chunks_per_tick
        if budget <= 0 or not (self.migration or self.replication):
            return
        vm = r.vm
        node_of_cpu = self.guest.node_of_cpu
        vnodes: dict[int, int] = {}
        for v in vm.vcpus:
            if v.cpu >= 0 and v.state not in (DONE, LOST):
                n = node_of_cpu[v.cpu]
                vnodes[n] = vnodes.get(n, 0) + 1
        if not vnodes:
            return
        s = vm.profile.memory_intensity * self.stall
        reg = r.region
        w_sh = vm.profile.kernel_fraction if reg is not None and reg.resident and r.hot_all_n \
            else (1.0 if r.hot_all_n == 0 else 0.0)
        frames = self.frames
        roomy = self.roomy
        cell_of_node = frames.cell_of_node
        cell_free = frames.cell_free
        home = vm.home_cells
        local = self.local_ns
        horizon = self.horizon_s
        lat = self.lat
        if self.migration and r.hot_all_n and w_sh < 1.0:
            pf = vm.profile.private_access_fraction
            w_shared = s * (1.0 - w_sh) * (1.0 - pf) / r.hot_all_n  # per chunk, per VCPU
            now = self.loop.now
            best: tuple[float, int, int, int] | None = None
            for v in vm.vcpus:
                if v.cpu < 0 or v.state == DONE or v.state == LOST:
                    continue
                i = v.index
                own = r.hot_node[i]
                dst = node_of_cpu[v.cpu]
                if not own or (len(own) == 1 and dst in own):
                    continue
                # Memory follows a VCPU that has settled on its node, not one in transit.
                if now - self.moved_at.get((vm.id, i), -1e18) < self.settle_s:
                    continue
                cell = cell_of_node[dst]
                if cell not in home or cell_free[cell] <= roomy \
                        or not frames.has_own_free(dst, cell):
                    continue
                w_own = s * (1.0 - w_sh) * pf / r.hot_res[i]
                la = lat[dst]
                for src in own:
                    if src == dst:
                        continue
                    # Stall (relative to local latency) saved per second by moving one chunk.
                    gain = w_own * (la[src] - la[dst])
                    for a, k in vnodes.items():
                        gain += w_shared * k * (lat[a][src] - lat[a][dst])
                    gain /= local
                    if best is None or gain > best[0]:
                        best = (gain, i, src, dst)
            if best is not None and best[0] * horizon > self.copy_s:
                _, i, src, dst = best
                nv = r.nv
                j0 = r.lo + (i - r.lo) % nv
                fpn = frames.fpn
                lo, hi = src * fpn, (src + 1) * fpn
                own_frames = r.frame[j0:r.lo + r.hot:nv]
                cell = cell_of_node[dst]
                cand = np.flatnonzero((own_frames >= lo) & (own_frames < hi))
                for x in cand[:budget].tolist():
                    if cell_free[cell] <= roomy:
                        break
                    g = frames.pop_node(dst, cell)
                    if g < 0:
                        break
                    self.guest.move_private(r, j0 + x * nv, g)
                    self.migrations += 1
                    budget -= 1
                    self._copy_cost(r, dst)
        if self.replication and reg is not None and reg.resident and budget > 0:
            per_chunk = s * w_sh / reg.resident
            fpn = frames.fpn
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
                pays = {x: not per_chunk * k * (lat_n[x] - local) / local * horizon
                        <= self.copy_s for x in reg.node_count}
                if not any(pays.values()):
                    continue
                if chunks is None:  # copies change neither state nor frames of the region
                    idx = (reg.state == RESIDENT).nonzero()[0].tolist()
                    frame_of = reg.frame.tolist()
                    chunks = [(i, frame_of[i] // fpn) for i in idx]
                for i, src in chunks:
                    if budget <= 0 or cell_free[cell] <= roomy:
                        break
                    if src == n or i in reps or not pays[src]:
                        continue
                    g = frames.pop_node(n, cell)
                    if g < 0:
                        break
                    frames.assign_replica(g, i)
                    reps[i] = g
                    self.replications += 1
                    budget -= 1
                    self._copy_cost(r, n)
                    self.guest.region_changed(reg)

    def _copy_cost(self, r: VMMemory, node: int) -> None:
        """A VCPU of the VM on ``node`` (else the next to touch memory) does the copy."""
        node_of_cpu = self.guest.node_of_cpu
        for v in r.vm.vcpus:
            if v.cpu >= 0 and node_of_cpu[v.cpu] == node and v.state not in (DONE, LOST):
                self.execution.charge(v, self.copy_s)
                return
        toucher = self.guest.toucher(r)
        if toucher is not None:
            self.execution.charge(toucher, self.copy_s)

    def drop_replicas(self, cell: int) -> None:
        """``cell`` is short: every replica on its nodes goes back to the free lists."""
        frames = self.frames
        if not frames.cell_replicas[cell]:
            return
        cell_of_node = frames.cell_of_node
        for reg in self.guest.regions.values():
            for node, reps in reg.replicas.items():
                if cell_of_node[node] == cell and reps:
                    for g in reps.values():
                        frames.push(g)
                    reps.clear()
                    self.guest.region_changed(reg)
