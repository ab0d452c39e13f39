"""The frame store: every frame of machine memory, who owns it, which cell manages it, and the
free lists (PAPER.md, Memory management).

Memory is tracked in frames of ``policy.chunk_mb`` (4 MB [A]: one frame stands for 1024 4 KB
pages). A frame's home node is fixed (frames are numbered node by node, ``frame //
frames_per_node``); per frame, compact numpy arrays hold the owner (a VM id, ``SHARED``,
``REPLICA`` or ``FREE``), the managing cell and the owner's chunk index. The store knows
nothing of VMs beyond those numbers.

Each cell manages its own nodes' frames, except frames it has lent: their management moved to
the borrower (``transfer``), while they stay on the lender's nodes. Free frames sit in per-node
stacks keyed by managing cell. The books kept here, incrementally:

- ``cell_free[c]``: free frames of ``c``'s own, on its nodes (0 while ``c`` is offline);
- ``lent[b][l]``: frames on ``l``'s nodes managed by borrower ``b``; ``loan_free[b][l]``: of
  them free (the borrower's reserve from that lender); ``on_loan``: all frames lent;
  ``reserved``: all reserves (frames borrowed and not in use).

The invariant checker recounts all of them from the frames (``invariants.audit_memory``).
*When* to lend and to whom is the borrowing policy's (``borrowing.py``).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from disco.hardware import Machine

FREE: Final = -1  # Final: inlined when compiled (see vmm/state.py)
SHARED: Final = -2
REPLICA: Final = -3


class FrameStore:
    def __init__(self, machine: Machine, chunk_mb: int) -> None:
        m = machine
        self.machine = m
        self.chunk_mb = chunk_mb
        self.fpn = fpn = m.memory_per_node_mb // chunk_mb  # frames per node
        self.frames = m.nodes * fpn
        self.cell_of_node = [m.cell_of_node(n) for n in range(m.nodes)]
        self.owner = np.full(self.frames, FREE, np.int32)
        self.manager = np.repeat(np.asarray(self.cell_of_node, np.int32), fpn)
        self.index = np.full(self.frames, -1, np.int32)
        self.free: list[dict[int, list[int]]] = [
            {self.cell_of_node[n]: list(range((n + 1) * fpn - 1, n * fpn - 1, -1))}
            for n in range(m.nodes)]
        self.node_free = [fpn] * m.nodes
        self.cell_free = [fpn * m.nodes_per_cell] * m.cells  # own-managed free frames
        self.cell_online = [True] * m.cells
        self.cell_replicas = [0] * m.cells  # replica frames on each cell's nodes
        self.lent: dict[int, dict[int, int]] = {}  # borrower -> lender -> frames managed
        self.loan_free: dict[int, dict[int, int]] = {}  # borrower -> lender -> of them free
        self.on_loan = 0
        self.reserved = 0  # sum of loan_free: borrowed frames not in use
        self._order: dict[tuple[int, int], list[int]] = {}

    def node_of(self, f: int) -> int:
        return f // self.fpn

    def first_node(self, cell: int) -> int:
        return cell * self.machine.nodes_per_cell

    def nodes_near(self, near: int, cell: int) -> list[int]:
        """``cell``'s nodes, nearest ``near`` first (by router hops, then number)."""
        order = self._order.get((near, cell))
        if order is None:
            m = self.machine
            order = sorted(m.cell_nodes(cell), key=lambda n: (m.hops(near, n), n))
            self._order[(near, cell)] = order
        return order

    # -- taking and giving back ----------------------------------------------------------
    def pop(self, cell: int, mgr: int, near: int) -> int:
        """A free frame on ``cell``'s nodes managed by ``mgr``, nearest ``near``; -1 if none."""
        if mgr == cell and self.cell_free[cell] <= 0:
            return -1
        for n in self.nodes_near(near, cell):
            stack = self.free[n].get(mgr)
            if stack:
                f = stack.pop()
                self.node_free[n] -= 1
                if mgr == cell:
                    self.cell_free[cell] -= 1
                else:
                    self.loan_free[mgr][cell] -= 1
                    self.reserved -= 1
                return f
        return -1

    def pop_node(self, n: int, cell: int) -> int:
        """A free frame of ``cell``'s own on node ``n`` exactly; -1 if none."""
        stack = self.free[n].get(cell)
        if not stack:
            return -1
        self.node_free[n] -= 1
        self.cell_free[cell] -= 1
        return stack.pop()

    def has_own_free(self, n: int, cell: int) -> bool:
        """Does node ``n`` hold a free frame that ``cell`` manages?"""
        return bool(self.free[n].get(cell))

    def assign(self, f: int, owner: int, idx: int) -> None:
        """Frame ``f`` now holds chunk ``idx`` of ``owner`` (a VM id or ``SHARED``)."""
        self.owner[f] = owner
        self.index[f] = idx

    def assign_replica(self, f: int, idx: int) -> None:
        """Frame ``f`` now holds a read-only copy of shared chunk ``idx``."""
        self.owner[f] = REPLICA
        self.cell_replicas[self.cell_of_node[f // self.fpn]] += 1
        self.index[f] = idx

    def push(self, f: int) -> None:
        """Frame ``f`` is free again, back with its manager."""
        n = f // self.fpn
        cell = self.cell_of_node[n]
        mgr = int(self.manager[f])
        if self.owner[f] == REPLICA:
            self.cell_replicas[cell] -= 1
        self.owner[f] = FREE
        self.index[f] = -1
        self.free[n].setdefault(mgr, []).append(f)
        self.node_free[n] += 1
        if mgr == cell:
            self.cell_free[cell] += 1
        else:
            self.loan_free[mgr][cell] += 1
            self.reserved += 1

    # -- loans: management moving between cells ---------------------------------------------
    def reserves(self, b: int) -> dict[int, int]:
        """Borrower ``b``'s free reserves by lender (made empty if it has none yet)."""
        return self.loan_free.setdefault(b, {})

    def transfer(self, lender: int, b: int, frames: int) -> int:
        """Hand management of up to ``frames`` free frames of ``lender`` to ``b``, from the
        lender's nodes nearest ``b`` first. Returns how many moved."""
        near = self.machine.cell_nodes(b)[0]
        moved = 0
        for n in self.nodes_near(near, lender):
            own = self.free[n].get(lender)
            while own and moved < frames:
                f = own.pop()
                self.manager[f] = b
                self.free[n].setdefault(b, []).append(f)
                moved += 1
            if moved == frames:
                break
        self.cell_free[lender] -= moved
        lent = self.lent.setdefault(b, {})
        lent[lender] = lent.get(lender, 0) + moved
        pools = self.loan_free.setdefault(b, {})
        pools[lender] = pools.get(lender, 0) + moved
        self.on_loan += moved
        self.reserved += moved
        return moved

    def give_back(self, b: int, lender: int, frames: int) -> int:
        """Borrower ``b`` hands up to ``frames`` of its free reserve from ``lender`` back.
        Returns how many moved."""
        moved = 0
        for n in self.machine.cell_nodes(lender):
            pool = self.free[n].get(b)
            if not pool:
                continue
            own = self.free[n].setdefault(lender, [])
            while pool and moved < frames:
                f = pool.pop()
                self.manager[f] = lender
                own.append(f)
                moved += 1
        self.loan_free[b][lender] -= moved
        self.lent[b][lender] -= moved
        self.on_loan -= moved
        self.reserved -= moved
        self.cell_free[lender] += moved
        return moved

    def disown(self, b: int, lender: int) -> None:
        """Frames in use that ``b`` manages on ``lender``'s nodes become the lender's own (one
        of the two failed; the free ones were given back already)."""
        for n in self.machine.cell_nodes(lender):
            lo, hi = n * self.fpn, (n + 1) * self.fpn
            for k in np.flatnonzero(self.manager[lo:hi] == b).tolist():
                self.manager[lo + k] = lender
                self.lent[b][lender] -= 1
                self.on_loan -= 1

    def reclaim_free(self, cell: int) -> None:
        """Free frames on ``cell``'s nodes that other cells manage go back to ``cell``, keeping
        the books (free = total) while it is offline."""
        for n in self.machine.cell_nodes(cell):
            for mgr, stack in list(self.free[n].items()):
                if mgr != cell and stack:
                    self.loan_free[mgr][cell] -= len(stack)
                    self.lent[mgr][cell] -= len(stack)
                    self.on_loan -= len(stack)
                    self.reserved -= len(stack)
                    for f in stack:
                        self.manager[f] = cell
                    self.free[n].setdefault(cell, []).extend(stack)
                    stack.clear()

    # -- cells going and coming (bus) ------------------------------------------------------
    def on_cell_failed(self, cell: int) -> None:
        """The cell is offline: nothing is taken from it. Subscribed after the handlers that
        unmap its frames and cancel its loans, so all its frames are free and its own."""
        self.cell_online[cell] = False
        self.cell_free[cell] = 0

    def on_cell_repaired(self, cell: int) -> None:
        self.cell_online[cell] = True
        self.cell_free[cell] = sum(len(self.free[n].get(cell, ()))
                                   for n in self.machine.cell_nodes(cell))
