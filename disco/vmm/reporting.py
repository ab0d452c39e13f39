"""Reporting: how a part of the model hands its results to the runner.

Every part that measures something has one method, ``report(out)``, that adds its scalar
metrics, its per-VM columns (one value per VM, in VM id order) and its named tables to a
``Report``. ``runner.build`` lists the parts; the runner collects them into a ``SimResult``.
A part reports its metrics even when it never acted (a switched-off balancer reports zero
moves), so every run has the same metric names.
"""

from __future__ import annotations

from typing import Protocol


class Report:
    """What the parts of one run report, in plain columns."""

    __slots__ = ("metrics", "vm_columns", "tables")

    def __init__(self) -> None:
        self.metrics: dict[str, float | int] = {}
        self.vm_columns: dict[str, list] = {}
        self.tables: dict[str, dict[str, list]] = {}


class Reporting(Protocol):
    def report(self, out: Report) -> None:
        """Add this part's metrics, per-VM columns and tables to ``out``."""
        ...
