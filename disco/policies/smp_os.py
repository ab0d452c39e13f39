"""Baseline: one commodity SMP OS over the whole machine, no monitor.

No virtualization overhead, but every job's kernel work contends across all the machine's
CPUs (``os_contention_rate`` over the total CPU count), which is why kernel-intensive work
scales worse than on a monitor that gives each VM a small OS. The OS schedules each process on
its own (no gang scheduling) and knows its own locks, so a descheduled thread costs its
siblings no spinning. The machine is a single cell: any hardware fault takes all jobs down.
"""

from __future__ import annotations

from disco.config import SimConfig, WorkloadProfile
from disco.policies.base import System, os_contention_rate


class SmpOs(System):
    name = "smp_os"
    one_cell = True
    gang = False
    spin_penalty = False  # the OS knows its own locks
    contains_faults = False  # any hardware fault takes the one OS down: a reboot

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg.policy
        self.cpus = cfg.total_cpus

    def virtualization_rate(self, profile: WorkloadProfile, vcpus: int) -> float:
        return os_contention_rate(self.cfg, profile, self.cpus)
