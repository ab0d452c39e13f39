"""What every system policy shares: the defaults, and the kernel-contention model.

A policy says what distinguishes one simulated system from another: how fast guest work runs
(the cost of virtualization and of the OS's own kernel contention), whether VCPUs are
gang-scheduled and spin on descheduled siblings, whether VCPUs, VMs or memory may cross cells,
what a hardware fault does, whether the whole machine is one cell, and which configurations
make sense for it (``check``). The monitor's mechanisms see it through ``disco.vmm.policy``,
config validation through ``disco.config.PolicyRules``; ``disco/policies/__init__.py``
registers every system by name. A policy variant is a small class plus a YAML file in
``conf/policy/``.
"""

from __future__ import annotations

import math
from typing import ClassVar

from disco.config import PolicyConfig, SimConfig, WorkloadProfile


class System:
    """Defaults; each system sets what distinguishes it."""

    name: ClassVar[str]
    one_cell: ClassVar[bool] = False  # the whole machine is one cell (no containment)
    spin_penalty: ClassVar[bool] = True  # a descheduled sibling makes the others spin
    cross_cell_moves: ClassVar[bool] = True  # may a VCPU or a VM move to another cell
    borrows_memory: ClassVar[bool] = True  # may a cell lend memory (borrow_policy applies)
    contains_faults: ClassVar[bool] = True  # False: any hardware fault reboots the machine
    gang: bool = True  # gang-schedule each VM's VCPUs

    @classmethod
    def check(cls, cfg: SimConfig) -> None:
        """The system's own configuration rules (raise ``ConfigError``); none by default."""

    def virtualization_rate(self, profile: WorkloadProfile, vcpus: int) -> float:
        """Guest progress per CPU-second for a VM of ``vcpus`` VCPUs running ``profile``."""
        raise NotImplementedError


def os_contention_rate(cfg: PolicyConfig, profile: WorkloadProfile, cpus: int) -> float:
    """Kernel contention of one commodity-OS instance spanning ``cpus`` CPUs [A].

    Kernel-intensive work scales worse with the CPUs its OS spans (locks, TLB shootdowns):
    ``1 / (1 + kernel_fraction * os_contention * log2(cpus))``. It applies to a guest OS over
    its VCPUs and to a native OS over its partition or machine alike, so comparisons between
    them isolate the monitor's own cost.
    """
    return 1.0 / (1.0 + profile.kernel_fraction * cfg.os_contention * math.log2(max(cpus, 1)))
