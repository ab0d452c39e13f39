"""The sweep driver: skip complete runs, run the rest (serially or on Ray), gather the rows.

Sweep-level concerns live here, not in the task: what is already done (a run is complete when
its ``metrics.parquet`` exists with ``status=ok``), progress, the failure summary and the final
``runs.parquet``. Failed runs are not "complete": the next invocation retries them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from disco.framework import results
from disco.framework.execute import RunContext, RunSummary, run_one
from disco.framework.plan import Plan
from disco.framework.progress import Progress


@dataclass(slots=True)
class SweepOutcome:
    study: str
    total: int
    skipped: int
    done: int
    failed: int
    runs_path: Path | None
    rows: list[dict[str, Any]] = field(default_factory=list)  # in plan order
    failures: list[RunSummary] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0


def run_sweep(plan: Plan, *, argv: list[str] | None = None, serial: bool | None = None,
              gather: bool = True, stream: TextIO | None = None) -> SweepOutcome:
    """Run every run of ``plan`` that is not complete yet; return what happened."""
    from disco.framework import ray_backend
    from disco.framework.compose import project_root
    from disco.framework.provenance import sweep_provenance

    t0 = time.perf_counter()
    stream = stream or sys.stderr
    force = bool(plan.sweep.get("force"))
    rows: dict[str, dict[str, Any]] = {}
    pending = []
    for spec in plan.runs:
        row = None if force else results.read_row(
            results.run_dir(plan.results_dir, spec.study, spec.key))
        if row is not None and row.get("status") == "ok":
            rows[spec.key] = row
        else:
            pending.append(spec)
    skipped = len(rows)
    progress = Progress(plan.study, len(plan.runs), skipped,
                        enabled=bool(plan.sweep.get("progress", True)), stream=stream)
    failures: list[RunSummary] = []

    def on_summary(s: RunSummary) -> None:
        rows[s.key] = s.row
        if s.status != "ok":
            failures.append(s)
        progress.add(s.status)

    if pending:
        root = project_root()
        ctx = RunContext(results_dir=str(plan.results_dir), task=plan.sweep["task"],
                         code_version=plan.code_version,
                         provenance=sweep_provenance(root, plan.code_version, argv or []))
        if serial is None:
            serial = bool(plan.sweep.get("serial")) or ray_backend.is_serial(plan.ray)
        progress.show(force=True)
        if serial:
            for spec in pending:
                on_summary(run_one(spec, ctx))
        else:
            ray_backend.run(pending, ctx, plan.ray, root, plan.sweep.get("batch_size"),
                            on_summary, tick=progress.show)
    progress.close()
    ordered = [rows[s.key] for s in plan.runs if s.key in rows]
    runs_path = results.gather(ordered, plan.study_dir / results.RUNS) if gather else None
    return SweepOutcome(study=plan.study, total=len(plan.runs), skipped=skipped,
                        done=progress.done, failed=progress.failed, runs_path=runs_path,
                        rows=ordered, failures=failures, wall_s=time.perf_counter() - t0)
