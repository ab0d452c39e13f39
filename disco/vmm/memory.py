"""Memory: where each VM's memory lives and what it costs (PAPER.md, Memory management).

The parts, each in a module named after it:

- ``frames.py``: the frame store, free lists per node and managing cell, the loan books;
- ``guest_memory.py``: each VM's chunks mapped onto frames, its FIFO, the shared regions;
- ``allocation.py``: first touch, then borrowed memory, then paging; disk waits;
- ``borrowing.py``: when a cell borrows and from whom; ``numa.py``: Disco's page migration and
  replication; ``paging.py``: what to evict, and the paper's three optimisations;
- ``remote_access.py``: the progress-rate model of remote-memory stalls;
- ``guest_behaviour.py``: the guest's own demand, frees and paging.

``Memory`` follows the VMs' lives (bus: arrival, exit, whole-VM migration, a cell's failure)
and runs the memory tick: every ``memory_tick_ms``, for each running VM, the guest's behaviour
(per the work it did since the last tick; skipped for a guest with nothing to do) and then the
NUMA policy; the rate factors of a VM whose placement changed are recomputed and its running
VCPUs re-rated; borrowers that are no longer short give their reserves back; the remote-access
share is sampled.
"""

from __future__ import annotations

import numpy as np

from disco.engine import EventLoop, RandomStreams
from disco.vmm.allocation import Allocator, MemoryWaits
from disco.vmm.borrowing import Borrowing
from disco.vmm.execution import Execution
from disco.vmm.frames import FREE, FrameStore
from disco.vmm.guest_behaviour import GuestBehaviour
from disco.vmm.guest_memory import EMPTY, GuestMemory, VMMemory
from disco.vmm.numa import NumaPolicy
from disco.vmm.remote_access import RemoteAccessCost
from disco.vmm.state import VM


class Memory:
    def __init__(self, loop: EventLoop, streams: RandomStreams, tick_s: float,
                 frames: FrameStore, guest: GuestMemory, alloc: Allocator, waits: MemoryWaits,
                 behaviour: GuestBehaviour, numa: NumaPolicy, borrowing: Borrowing,
                 remote: RemoteAccessCost, execution: Execution) -> None:
        self.loop = loop
        self.streams = streams
        self.tick_s = tick_s
        self.frames = frames
        self.guest = guest
        self.alloc = alloc
        self.waits = waits
        self.behaviour = behaviour
        self.numa = numa
        self.borrowing = borrowing
        self.remote = remote
        self.execution = execution

    def start(self) -> None:
        self.loop.schedule(self.tick_s, self.tick)

    def refresh(self, r: VMMemory) -> None:
        """Placement changed: drop the cached factors and re-rate running VCPUs (once)."""
        if not r.dirty:
            return
        r.dirty = False
        self.remote.forget(r)
        self.execution.rerate(r.vm)

    # -- VM life (bus) ------------------------------------------------------------------------
    def on_vm_arrived(self, vm: VM) -> None:
        p = vm.profile
        chunk = self.frames.chunk_mb
        total = max(1, -(-vm.memory_mb // chunk))
        sh = min(total, -(-p.shared_mb // chunk)) if p.shared_mb > 0 else 0
        r = self.guest.add(vm, total - sh, self.streams.get(f"memory/{vm.id}"))
        if sh:
            self.alloc.attach_region(r, sh)
        self.behaviour.boot(r)
        self.refresh(r)

    def on_vm_exited(self, vm: VM) -> None:
        guest = self.guest
        r = guest.remove(vm)
        if r is None:
            return
        for j in np.flatnonzero(r.frame >= 0).tolist():
            f = int(r.frame[j])
            r.state[j] = EMPTY
            guest.unmap_private(r, j, f)
        guest.leave_region(r)
        self.waits.forget(vm)
        self.numa.forget(vm)
        self.borrowing.settle()

    def on_vm_migrated(self, vm: VM, old_cells: tuple[int, ...],
                       new_cells: tuple[int, ...]) -> None:
        """A whole-VM migration copied its memory: move every frame into the new cells."""
        guest = self.guest
        r = guest.records.get(vm.id)
        if r is None:
            return
        r.lenders = []
        cell_of_node = self.frames.cell_of_node
        fpn = self.frames.fpn
        for j in np.flatnonzero(r.frame >= 0).tolist():
            f = int(r.frame[j])
            if cell_of_node[f // fpn] in new_cells:
                continue
            g = self.alloc.take(r, guest.node_of(r, guest.owner(r, j)), self.loop.now)
            if g < 0:
                continue  # stays behind: the VM still depends on that cell
            guest.move_private(r, j, g)
        if r.region is not None and r.region.key[1] not in new_cells:
            sh = r.region.n
            guest.leave_region(r)
            self.alloc.attach_region(r, sh)
        self.borrowing.settle()
        self.refresh(r)

    def on_cell_failed(self, cell: int) -> None:
        """A cell failed: the memory homed on its nodes is lost; VMs still running keep going
        with those chunks empty. (Its loans and the cell's books: ``Borrowing`` and
        ``FrameStore`` follow on the bus.)"""
        frames = self.frames
        fpn = frames.fpn
        for n in frames.machine.cell_nodes(cell):
            lo, hi = n * fpn, (n + 1) * fpn
            owners = frames.owner[lo:hi]
            for k in np.flatnonzero(owners != FREE).tolist():
                self.guest.lose(lo + k)

    # -- every tick ---------------------------------------------------------------------------
    def tick(self) -> None:
        dt = self.tick_s
        behaviour, numa, guest = self.behaviour, self.numa, self.guest
        for r in list(guest.records.values()):
            vm = r.vm
            if vm.status != "running":
                continue
            if behaviour.busy(r):
                behaviour.step(r)
            numa.step(r)
            if r.dirty:
                self.refresh(r)
            guest.note_cells(vm)
        self.borrowing.settle()
        self.remote.sample(dt)
        self.loop.schedule(dt, self.tick)
