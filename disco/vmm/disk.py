"""Paging disks: a seek plus a transfer per request, one FIFO queue per disk (PAPER.md, Paging).

A request of ``mb`` megabytes issued at ``now`` to disk ``d`` starts when the disk is free and
takes ``disk_seek_ms + mb / disk_mb_per_s``; the disk then stays busy until it ends. A queue is
just the time its disk becomes free, so a request costs O(1). A VM's chunks go to disk
``vm_id % paging_disks`` (its swap area). Defaults [A]: 8 ms seek, 20 MB/s, four disks: a
1999 SCSI disk moves one 4 MB chunk in ~0.2 s. Every request is announced on the bus
(``disk_request``) for observers.
"""

from __future__ import annotations

from disco.config import PolicyConfig
from disco.vmm.bus import Bus
from disco.vmm.reporting import Report


class Disks:
    def __init__(self, p: PolicyConfig, bus: Bus) -> None:
        self.bus = bus
        self.seek_s = p.disk_seek_ms * 1e-3
        self.mb_per_s = p.disk_mb_per_s
        self.free_at = [0.0] * p.paging_disks
        self.busy_s = 0.0  # total service time (utilisation)
        self.reads = 0
        self.writes = 0

    def disk_of(self, vm_id: int) -> int:
        return vm_id % len(self.free_at)

    def request(self, disk: int, now: float, mb: float, write: bool) -> float:
        """Queue one transfer; returns the time it completes."""
        start = max(now, self.free_at[disk])
        service = self.seek_s + mb / self.mb_per_s
        end = start + service
        self.free_at[disk] = end
        self.busy_s += service
        if write:
            self.writes += 1
        else:
            self.reads += 1
        self.bus.disk_request(disk, now, mb, write)
        return end

    def report(self, out: Report) -> None:
        out.metrics["disk_writes"] = self.writes
        out.metrics["disk_reads"] = self.reads
