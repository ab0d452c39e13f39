"""What the monitor's mechanisms need to know of the system being simulated.

``disco/policies/`` implements it, once per system (Cellular Disco, Disco with one cell, fixed
hardware partitions, one SMP OS); ``runner.build`` hands each mechanism the answers it uses.
The vmm layer depends on this interface only, never on ``disco/policies``.
"""

from __future__ import annotations

from typing import Protocol

from disco.config import WorkloadProfile


class Policy(Protocol):
    gang: bool  # gang-schedule each VM's VCPUs (a monitor running guest OSes)
    spin_penalty: bool  # a descheduled sibling makes the others spin (a guest cannot know)
    cross_cell_moves: bool  # may a VCPU, or a whole VM, ever move to another cell
    borrows_memory: bool  # may a cell lend memory to another (borrow_policy applies)
    contains_faults: bool  # a hardware fault kills its cells' dependents; False: a reboot

    def virtualization_rate(self, profile: WorkloadProfile, vcpus: int) -> float:
        """Guest progress per CPU-second for a VM of ``vcpus`` VCPUs running ``profile``."""
        ...
