"""Baseline: fixed hardware partitions (IBM LPAR, Sun domains), the paper's comparison point.

Each cell is a static hardware partition running its own OS natively: no virtualization
overhead, kernel contention over the partition's CPUs only. A VM (a job) is bound to one
partition for its life: validation rejects a VM larger than a partition, no VCPU ever moves to
another partition, and (with the memory model) no memory is borrowed across it. A fault kills
its partition's VMs. Within a partition the OS schedules threads on its own, as an SMP OS does.
"""

from __future__ import annotations

from disco.config import SimConfig, WorkloadProfile
from disco.policies.base import os_contention_rate


class FixedPartition:
    name = "fixed_partition"
    gang = False
    spin_penalty = False
    borrows_memory = False  # each partition's OS has its own memory
    contains_faults = True
    cross_cell_moves = False

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg.policy
        self.partition_cpus = cfg.nodes_per_cell * cfg.machine.cpus_per_node

    def virtualization_rate(self, profile: WorkloadProfile, vcpus: int) -> float:
        return os_contention_rate(self.cfg, profile, self.partition_cpus)
