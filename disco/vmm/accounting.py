"""CPU-time accounting: every CPU-second lands in exactly one bucket.

Buckets, per cell: ``guest`` (a VCPU making progress, virtualization slowdown included),
``spin`` (a VCPU spinning on a lock held by a descheduled sibling), ``overhead`` (monitor work:
switches, migrations, cache re-warming) and ``idle``. Together they add up to CPUs x time, which
the invariant tests check. The timeline samples these per cell at a fixed interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class CpuAccounts:
    cells: int
    guest: list[float] = field(default_factory=list)
    spin: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)
    idle: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for bucket in (self.guest, self.spin, self.overhead, self.idle):
            bucket[:] = [0.0] * self.cells

    def totals(self) -> tuple[float, float, float, float]:
        return sum(self.guest), sum(self.spin), sum(self.overhead), sum(self.idle)


@dataclass(slots=True)
class Timeline:
    """Long-format samples, one row per (time, cell), kept as plain column lists."""

    time_s: list[float] = field(default_factory=list)
    cell: list[int] = field(default_factory=list)
    load: list[int] = field(default_factory=list)
    utilization: list[float] = field(default_factory=list)
    spin_fraction: list[float] = field(default_factory=list)
    idle_fraction: list[float] = field(default_factory=list)
    running_vms: list[int] = field(default_factory=list)

    def columns(self) -> dict[str, list]:
        return {
            "time_s": self.time_s, "cell": self.cell, "load": self.load,
            "utilization": self.utilization, "spin_fraction": self.spin_fraction,
            "idle_fraction": self.idle_fraction, "running_vms": self.running_vms,
        }
