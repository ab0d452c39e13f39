"""What one run returns: scalar metrics, a timeline and per-VM rows, all plain Python values.

Plain columns (``dict[str, list]``) so the simulator needs no dataframe library; the framework
turns them into Parquet with polars.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SimResult:
    metrics: dict[str, float | int]
    # Long format, one row per (sample time, cell): time_s, cell, load, utilization ...
    timeline: dict[str, list] = field(default_factory=dict)
    # One row per VM: vm, workload, vcpus, arrival_s, finish_s, runtime_s, status, ...
    vms: dict[str, list] = field(default_factory=dict)
    # Extra named tables later mechanisms add (e.g. "faults"), each in plain columns.
    tables: dict[str, dict[str, list]] = field(default_factory=dict)
