"""The policy interface and the registry that picks one by ``policy.name``.

A policy says what distinguishes a system from the others: how fast guest work runs (the cost
of virtualization and of the OS's own kernel contention) and which scheduling rules apply. A
policy variant is a small class here plus a YAML file in ``conf/policy/``.
"""

from __future__ import annotations

import math

from disco.config import PolicyConfig, SimConfig, WorkloadProfile
from disco.vmm.policy import Policy


def os_contention_rate(cfg: PolicyConfig, profile: WorkloadProfile, cpus: int) -> float:
    """Kernel contention of one commodity-OS instance spanning ``cpus`` CPUs [A].

    Kernel-intensive work scales worse with the CPUs its OS spans (locks, TLB shootdowns):
    ``1 / (1 + kernel_fraction * os_contention * log2(cpus))``. It applies to a guest OS over
    its VCPUs and to a native OS over its partition or machine alike, so comparisons between
    them isolate the monitor's own cost.
    """
    return 1.0 / (1.0 + profile.kernel_fraction * cfg.os_contention * math.log2(max(cpus, 1)))


def make_policy(cfg: SimConfig) -> Policy:
    from disco.policies.cellular_disco import CellularDisco, DiscoOneCell
    from disco.policies.fixed_partition import FixedPartition
    from disco.policies.smp_os import SmpOs

    registry: dict[str, type] = {
        "cellular_disco": CellularDisco,
        "disco_one_cell": DiscoOneCell,
        "fixed_partition": FixedPartition,
        "smp_os": SmpOs,
    }
    return registry[cfg.policy.name](cfg)
