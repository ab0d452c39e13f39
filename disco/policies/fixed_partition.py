"""Baseline: fixed hardware partitions (IBM LPAR, Sun domains), the paper's comparison point.

Each cell is a static hardware partition running its own OS natively: no virtualization
overhead, kernel contention over the partition's CPUs only. A VM (a job) is bound to one
partition for its life: validation rejects a VM larger than a partition, no VCPU ever moves to
another partition, and (with the memory model) no memory is borrowed across it. A fault kills
its partition's VMs. Within a partition the OS schedules threads on its own, as an SMP OS does.
"""

from __future__ import annotations

from disco.config import ConfigError, SimConfig, WorkloadProfile
from disco.policies.base import System, os_contention_rate


class FixedPartition(System):
    name = "fixed_partition"
    gang = False
    spin_penalty = False
    cross_cell_moves = False  # a partition's OS runs where it was booted
    borrows_memory = False  # each partition's OS has its own memory

    @classmethod
    def check(cls, cfg: SimConfig) -> None:
        per_cell = cfg.nodes_per_cell * cfg.machine.cpus_per_node
        for i, g in enumerate(cfg.workload.vms):
            if g.vcpus > per_cell:
                raise ConfigError(f"workload.vms[{i}].vcpus", g.vcpus,
                                  f"policy {cls.name} binds a VM to one partition (cell) of "
                                  f"{per_cell} CPUs")

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg.policy
        self.partition_cpus = cfg.nodes_per_cell * cfg.machine.cpus_per_node

    def virtualization_rate(self, profile: WorkloadProfile, vcpus: int) -> float:
        return os_contention_rate(self.cfg, profile, self.partition_cpus)
