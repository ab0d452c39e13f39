"""Cellular Disco itself: virtualization overhead from trapped kernel work.

Model [A]: a guest spending ``kernel_fraction`` of its time in the kernel pays ``trap_cost``
per unit of it for emulated privileged operations, plus ``vcpu_scaling_cost`` per doubling of
its VCPUs (inter-processor interrupts and TLB shootdowns that the monitor forwards). With the
defaults, Pmake (the most kernel-intensive workload) loses 9 % on 1 CPU and 20 % on 32, as the
paper reports as its worst cases; CPU-bound Raytrace loses 1-2 %.
"""

from __future__ import annotations

import math

from disco.config import PolicyConfig, WorkloadProfile


class CellularDisco:
    name = "cellular_disco"

    def __init__(self, cfg: PolicyConfig) -> None:
        self.trap_cost = cfg.trap_cost
        self.vcpu_scaling_cost = cfg.vcpu_scaling_cost

    def virtualization_rate(self, profile: WorkloadProfile, vcpus: int) -> float:
        overhead = profile.kernel_fraction * (
            self.trap_cost + self.vcpu_scaling_cost * math.log2(max(vcpus, 1)))
        return 1.0 / (1.0 + overhead)
