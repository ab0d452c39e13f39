"""Cellular Disco itself, and Disco (one cell): virtualization overhead from trapped kernel work.

Model [A]: a guest spending ``kernel_fraction`` of its time in the kernel pays ``trap_cost``
per unit of it for emulated privileged operations, plus ``vcpu_scaling_cost`` per doubling of
its VCPUs (inter-processor interrupts and TLB shootdowns that the monitor forwards). With the
defaults, Pmake (the most kernel-intensive workload) loses 9 % on 1 CPU and 20 % on 32 against
the same OS run natively, the paper's worst cases; CPU-bound Raytrace loses 1-2 %. The guest OS's
own kernel contention (``os_contention_rate``) comes on top, as it would natively.
"""

from __future__ import annotations

import math

from disco.config import SimConfig, WorkloadProfile
from disco.policies.base import System, os_contention_rate


class CellularDisco(System):
    """The monitor with fault-containment cells: gang scheduling as configured
    (``policy.gang``), VCPUs, VMs and memory may cross cells, a fault kills its cells'
    dependents."""

    name = "cellular_disco"

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg.policy
        self.gang = cfg.policy.gang

    def virtualization_rate(self, profile: WorkloadProfile, vcpus: int) -> float:
        overhead = profile.kernel_fraction * (
            self.cfg.trap_cost + self.cfg.vcpu_scaling_cost * math.log2(max(vcpus, 1)))
        return os_contention_rate(self.cfg, profile, vcpus) / (1.0 + overhead)


class DiscoOneCell(CellularDisco):
    """The original Disco: the same monitor, but the whole machine is one cell, so any
    hardware fault takes every VM down (through the same containment rule)."""

    name = "disco_one_cell"
    one_cell = True
