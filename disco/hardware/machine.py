"""The CC-NUMA machine: nodes of CPUs and memory, a hypercube of routers, cells of nodes.

CPUs are numbered node by node, and cells are contiguous runs of nodes, so ``cpu // cpus_per_node``
is the node and ``node // nodes_per_cell`` the cell. Origin 2000 routers form a hypercube of
nodes, so the router hops between two nodes are the bits in which their numbers differ
(PAPER.md, Machine [A]). Every mechanism speaks of distance in four classes: same CPU, same node,
same cell, other cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from disco.config import SimConfig

# Final: inlined when compiled (see vmm/state.py)
SAME_CPU: Final = 0
SAME_NODE: Final = 1
SAME_CELL: Final = 2
OTHER_CELL: Final = 3
DISTANCE_NAMES = ("same_cpu", "same_node", "same_cell", "other_cell")


@dataclass(slots=True, frozen=True)
class Machine:
    nodes: int
    cpus_per_node: int
    nodes_per_cell: int
    memory_per_node_mb: int
    local_latency_ns: float
    remote_latency_ns: float
    hop_latency_ns: float

    @classmethod
    def from_config(cls, cfg: SimConfig) -> Machine:
        m = cfg.machine
        return cls(m.nodes, m.cpus_per_node, cfg.nodes_per_cell, m.memory_per_node_mb,
                   m.local_latency_ns, m.remote_latency_ns, m.hop_latency_ns)

    @property
    def cpus(self) -> int:
        return self.nodes * self.cpus_per_node

    @property
    def cells(self) -> int:
        return self.nodes // self.nodes_per_cell

    @property
    def cpus_per_cell(self) -> int:
        return self.nodes_per_cell * self.cpus_per_node

    @property
    def memory_mb(self) -> int:
        return self.nodes * self.memory_per_node_mb

    def node_of(self, cpu: int) -> int:
        return cpu // self.cpus_per_node

    def cell_of_node(self, node: int) -> int:
        return node // self.nodes_per_cell

    def cell_of(self, cpu: int) -> int:
        return cpu // self.cpus_per_cell

    def cell_cpus(self, cell: int) -> range:
        per = self.cpus_per_cell
        return range(cell * per, (cell + 1) * per)

    def cell_nodes(self, cell: int) -> range:
        return range(cell * self.nodes_per_cell, (cell + 1) * self.nodes_per_cell)

    def node_cpus(self, node: int) -> range:
        return range(node * self.cpus_per_node, (node + 1) * self.cpus_per_node)

    def hops(self, node_a: int, node_b: int) -> int:
        """Router hops between two nodes on the hypercube (0 for the same node)."""
        return (node_a ^ node_b).bit_count()

    def latency_ns(self, node_a: int, node_b: int) -> float:
        """Memory latency seen by a CPU on ``node_a`` for memory on ``node_b``."""
        return self.latency_for_hops(self.hops(node_a, node_b))

    def latency_for_hops(self, hops: int) -> float:
        if hops == 0:
            return self.local_latency_ns
        return self.remote_latency_ns + (hops - 1) * self.hop_latency_ns

    def latency_table(self) -> list[list[float]]:
        """``latency_ns`` for every pair of nodes, built from the few distinct hop counts.

        ``hops`` is inlined: the table is nodes squared, and a call per pair would be most of
        building a big machine."""
        by_hops = [self.latency_for_hops(h) for h in range(self.nodes.bit_length() + 1)]
        nodes = range(self.nodes)
        return [[by_hops[(a ^ b).bit_count()] for b in nodes] for a in nodes]

    def distance(self, cpu_a: int, cpu_b: int) -> int:
        """Distance class between two CPUs: SAME_CPU, SAME_NODE, SAME_CELL or OTHER_CELL."""
        if cpu_a == cpu_b:
            return SAME_CPU
        if self.node_of(cpu_a) == self.node_of(cpu_b):
            return SAME_NODE
        if self.cell_of(cpu_a) == self.cell_of(cpu_b):
            return SAME_CELL
        return OTHER_CELL
