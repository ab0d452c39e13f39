"""The periodic balancer's load tree (PAPER.md, CPU management).

A binary tree over the CPUs in machine order, so subtrees line up with nodes and cells. Each
tree node holds the CPUs ``[lo, hi)`` under it (``size``: how many of them are live) and their
load summed (the VCPUs' smoothed loads, ``periodic_balancer.py``); finding the heaviest or
lightest CPU under a tree node walks down one path, so the balancer never scans all CPUs to
decide a move.

Only the periodic balancer reads the sums, once per period, so it rebuilds them from the CPUs'
loads at the start of its tick (``refresh``, O(CPUs), no more than the walk that follows),
then patches the two CPUs of each move it makes (``set_load``, O(log CPUs)).

Every field is a ``vec`` (``librt.vecs``): compiled, a contiguous array of unboxed machine
numbers, where a ``list[float]`` holds a pointer per item to a float object of its own, a new
one at every store. ``refresh`` rewrites every sum each period: as vecs the tree is a few
contiguous arrays the caches keep, not thousands of floats spread over the heap. Run from the
sources, a vec behaves as a list of the same numbers.
"""

from __future__ import annotations

from librt.vecs import vec
from mypy_extensions import i64


class LoadTree:
    __slots__ = ("left", "right", "lo", "hi", "size", "parent", "sum", "leaf_of", "internal")

    def __init__(self, n_cpus: int) -> None:
        # Built as lists (the build appends), then frozen into vecs of fixed length.
        nodes: list[list[int]] = [[] for _ in range(6)]
        leaf_of = [0] * n_cpus
        _build(nodes, leaf_of, 0, n_cpus, -1)
        left, right, lo, hi, size, parent = nodes
        self.left: vec[i64] = vec[i64](left)
        self.right: vec[i64] = vec[i64](right)
        self.lo: vec[i64] = vec[i64](lo)
        self.hi: vec[i64] = vec[i64](hi)
        self.size: vec[i64] = vec[i64](size)  # live CPUs under the node
        self.parent: vec[i64] = vec[i64](parent)
        self.sum: vec[float] = vec[float]([0.0] * len(lo))
        self.leaf_of: vec[i64] = vec[i64](leaf_of)
        # Internal nodes in breadth-first order: the balancer walks from the root down.
        order, internal = [0], []
        for node in order:
            if left[node] >= 0:
                internal.append(node)
                order.extend((left[node], right[node]))
        self.internal: vec[i64] = vec[i64](internal)

    def refresh(self, loads: vec[float]) -> None:
        """Recompute every sum from the CPUs' loads (children before parents)."""
        s, left, right, leaf_of, internal = self.sum, self.left, self.right, self.leaf_of, \
            self.internal
        for cpu in range(len(leaf_of)):
            s[leaf_of[cpu]] = loads[cpu]
        for k in range(len(internal) - 1, -1, -1):
            node = internal[k]
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
                node = a if s[a] * float(size[b]) >= s[b] * float(size[a]) else b
        return self.lo[node]

    def lightest(self, node: int) -> int:
        left, right, s, size = self.left, self.right, self.sum, self.size
        while left[node] >= 0:
            a, b = left[node], right[node]
            if not size[a] or not size[b]:  # a subtree of failed CPUs only: avoid it
                node = b if not size[a] else a
            else:
                node = a if s[a] * float(size[b]) <= s[b] * float(size[a]) else b
        return self.lo[node]


def _build(nodes: list[list[int]], leaf_of: list[int], lo: int, hi: int, parent: int) -> int:
    """Append the subtree over CPUs ``[lo, hi)`` to ``nodes`` (left, right, lo, hi, size,
    parent); returns its root."""
    left, right, los, his, size, parents = nodes
    node = len(los)
    left.append(-1)
    right.append(-1)
    los.append(lo)
    his.append(hi)
    size.append(hi - lo)
    parents.append(parent)
    if hi - lo == 1:
        leaf_of[lo] = node
    else:
        mid = (lo + hi + 1) // 2
        left[node] = _build(nodes, leaf_of, lo, mid, node)
        right[node] = _build(nodes, leaf_of, mid, hi, node)
    return node
