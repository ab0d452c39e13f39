"""The periodic balancer's load tree (PAPER.md, CPU management).

A binary tree over the CPUs in machine order, so subtrees line up with nodes and cells. Each
tree node holds the CPUs ``[lo, hi)`` under it (``size``: how many of them are live) and their
load summed (the VCPUs' smoothed loads, ``periodic_balancer.py``); finding the heaviest or
lightest CPU under a tree node walks down one path, so the balancer never scans all CPUs to
decide a move.

Only the periodic balancer reads the sums, once per period, so it rebuilds them from the CPUs'
loads at the start of its tick (``refresh``, O(CPUs), no more than the walk that follows),
then patches the two CPUs of each move it makes (``set_load``, O(log CPUs)).
"""

from __future__ import annotations


class LoadTree:
    __slots__ = ("left", "right", "lo", "hi", "size", "parent", "sum", "leaf_of", "internal")

    def __init__(self, n_cpus: int) -> None:
        self.left: list[int] = []
        self.right: list[int] = []
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.size: list[int] = []
        self.parent: list[int] = []
        self.sum: list[float] = []
        self.leaf_of = [0] * n_cpus
        self._build(0, n_cpus, -1)
        # Internal nodes in breadth-first order: the balancer walks from the root down.
        order, internal = [0], []
        for node in order:
            if self.left[node] >= 0:
                internal.append(node)
                order.extend((self.left[node], self.right[node]))
        self.internal = internal

    def _build(self, lo: int, hi: int, parent: int) -> int:
        node = len(self.lo)
        self.left.append(-1)
        self.right.append(-1)
        self.lo.append(lo)
        self.hi.append(hi)
        self.size.append(hi - lo)
        self.parent.append(parent)
        self.sum.append(0.0)
        if hi - lo == 1:
            self.leaf_of[lo] = node
        else:
            mid = (lo + hi + 1) // 2
            self.left[node] = self._build(lo, mid, node)
            self.right[node] = self._build(mid, hi, node)
        return node

    def refresh(self, loads: list[float]) -> None:
        """Recompute every sum from the CPUs' loads (children before parents)."""
        s, left, right = self.sum, self.left, self.right
        for cpu, leaf in enumerate(self.leaf_of):
            s[leaf] = loads[cpu]
        for node in reversed(self.internal):
            s[node] = s[left[node]] + s[right[node]]

    def set_load(self, cpu: int, load: float) -> None:
        """One CPU's load changed since ``refresh``: fix its leaf-to-root path."""
        node = self.leaf_of[cpu]
        delta = load - self.sum[node]
        if not delta:
            return
        s, parent = self.sum, self.parent
        while node >= 0:
            s[node] += delta
            node = parent[node]

    def load(self, cpu: int) -> float:
        return self.sum[self.leaf_of[cpu]]

    def set_online(self, cpu: int, online: bool) -> None:
        """A failed (offline) CPU stops counting in ``size``: subtrees compare load per live
        CPU and ``lightest`` never walks into a subtree with no live CPU (faults)."""
        node = self.leaf_of[cpu]
        delta = 1 if online else -1
        if (self.size[node] == 1) == online:
            return
        size, parent = self.size, self.parent
        while node >= 0:
            size[node] += delta
            node = parent[node]

    def heaviest(self, node: int) -> int:
        """The CPU reached by always stepping to the child with more load per CPU."""
        left, right, s, size = self.left, self.right, self.sum, self.size
        while left[node] >= 0:
            a, b = left[node], right[node]
            if not size[a] or not size[b]:
                node = b if not size[a] else a
            else:
                node = a if s[a] * size[b] >= s[b] * size[a] else b
        return self.lo[node]

    def lightest(self, node: int) -> int:
        left, right, s, size = self.left, self.right, self.sum, self.size
        while left[node] >= 0:
            a, b = left[node], right[node]
            if not size[a] or not size[b]:  # a subtree of failed CPUs only: avoid it
                node = b if not size[a] else a
            else:
                node = a if s[a] * size[b] <= s[b] * size[a] else b
        return self.lo[node]
