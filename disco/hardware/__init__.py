"""Hardware layer: the machine's nodes, CPUs, cells and NUMA distances (and, later, faults)."""

from disco.hardware.machine import OTHER_CELL, SAME_CELL, SAME_CPU, SAME_NODE, Machine

__all__ = ["Machine", "SAME_CPU", "SAME_NODE", "SAME_CELL", "OTHER_CELL"]
