"""What one run returns: scalar metrics, a timeline and per-VM rows, all plain Python values.

Plain columns (``dict[str, list]``) so the simulator needs no dataframe library; the framework
turns them into Parquet with polars, and ``to_polars`` (which imports polars only when called)
gives one table of a single run in a notebook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SimResult:
    metrics: dict[str, float | int]
    # Long format, one row per (sample time, cell): time_s, cell, load, utilization ...
    timeline: dict[str, list] = field(default_factory=dict)
    # One row per VM: vm, workload, vcpus, arrival_s, finish_s, runtime_s, status, ...
    vms: dict[str, list] = field(default_factory=dict)
    # Extra named tables later mechanisms add (e.g. "faults"), each in plain columns.
    tables: dict[str, dict[str, list]] = field(default_factory=dict)

    def to_polars(self, table: str = "metrics") -> Any:
        """One table of this run as a ``polars.DataFrame``: ``"metrics"`` (one row), ``"timeline"``,
        ``"vms"`` or one of ``tables`` (e.g. ``"faults"``). Polars is imported here, on demand:
        the simulator itself never needs it."""
        import polars as pl

        if table == "metrics":
            return pl.from_dicts([self.metrics], infer_schema_length=None)
        cols = {"timeline": self.timeline, "vms": self.vms}.get(table, self.tables.get(table))
        if cols is None:
            known = ", ".join(["metrics", "timeline", "vms", *self.tables])
            raise KeyError(f"no table {table!r} in this result; it has {known}")
        return pl.DataFrame(cols, strict=False)
