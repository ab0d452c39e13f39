"""The sweep driver: skip complete runs, run the rest (serially or on Ray), gather the rows.

Sweep-level concerns live here, not in the task: what is already done (a run is complete when
its ``metrics.parquet`` exists with ``status=ok`` and, when the run asks for a trace, the
trace was written with the same trace keys: ``tracing.satisfied``), progress, failures
(printed as they happen; ``sweep.fail_fast`` stops at the first), each study's
``runs.parquet`` (the rows of this sweep, with the columns of *this* plan) and a dated
manifest per sweep in ``<study>/sweeps/``. Failed runs are not "complete": the next invocation
retries them.

``run_jobs`` plans and runs a list of override lists (one config each) through the same
planner, run keys and cache as the command line: what a tuner needs per trial.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from disco.framework import results, tracing
from disco.framework.execute import (
    RunContext,
    RunSpec,
    RunSummary,
    base_row,
    owner,
    trusted_path,
)
from disco.framework.isolate import Isolated
from disco.framework.plan import Plan, Planner
from disco.framework.progress import Progress


@dataclass(slots=True)
class SweepOutcome:
    study: str  # the first study of the plan
    total: int
    skipped: int
    done: int
    failed: int
    runs_path: Path | None  # the first study's runs.parquet
    rows: list[dict[str, Any]] = field(default_factory=list)  # in plan order
    failures: list[RunSummary] = field(default_factory=list)
    wall_s: float = 0.0
    runs_paths: dict[str, Path] = field(default_factory=dict)  # every study's runs.parquet
    stopped: bool = False  # sweep.fail_fast stopped it at the first failure
    not_run: int = 0  # runs left undone because it stopped

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.stopped


def error_file(plan: Plan, spec: RunSpec) -> Path:
    return results.run_dir(plan.results_dir, spec.study, spec.key) / "error.txt"


def run_sweep(plan: Plan, *, argv: list[str] | None = None, serial: bool | None = None,
              gather: bool = True, stream: TextIO | None = None) -> SweepOutcome:
    """Run every run of ``plan`` that is not complete yet; return what happened."""
    from disco.framework import ray_backend
    from disco.framework.compose import project_root
    from disco.framework.provenance import sweep_provenance

    t0 = time.perf_counter()
    started_at = datetime.now(UTC)
    stream = stream or sys.stderr
    force = bool(plan.sweep.get("force"))
    fail_fast = bool(plan.sweep.get("fail_fast"))
    rows: dict[str, dict[str, Any]] = {}
    pending: list[RunSpec] = []
    donors = None if force else _other_studies(plan)
    for spec in plan.runs:
        path = results.run_dir(plan.results_dir, spec.study, spec.key)
        row = None if force else results.read_row(path)
        if row is None and donors:
            row = _adopt(plan, spec, path, donors)
        if row is not None and row.get("status") == "ok" and tracing.satisfied(row, path,
                                                                              spec.trace):
            rows[spec.key] = row
        else:
            pending.append(spec)
    skipped = len(rows)
    label = plan.study if len(plan.studies) == 1 else f"{plan.study} +{len(plan.studies) - 1}"
    progress = Progress(label, len(plan.runs), skipped,
                        enabled=bool(plan.sweep.get("progress", True)), stream=stream)
    failures: list[RunSummary] = []
    by_key = {s.key: s for s in plan.runs}

    def on_summary(s: RunSummary) -> None:
        rows[s.key] = s.row
        if s.status != "ok":
            failures.append(s)
        spec = by_key[s.key]
        detail = " ".join(f"{k}={v}" for k, v in spec.columns.items() if "." in k)
        progress.add(s.status, s.key, error_file(plan, spec) if s.status != "ok" else None,
                     detail=f"replicate={spec.replicate} {detail}".strip(), error=s.error)

    def stop() -> bool:
        return fail_fast and bool(failures)

    stopped = False
    if pending:
        check_writable(plan)
        root = project_root()
        ctx = RunContext(results_dir=str(plan.results_dir), task=plan.sweep["task"],
                         code_version=plan.code_version,
                         provenance=sweep_provenance(root, plan.code_version, argv or []),
                         sys_path=tuple(trusted_path()), sweep_id=uuid.uuid4().hex)
        if serial is None:
            serial = bool(plan.sweep.get("serial")) or ray_backend.is_serial(plan.ray)
        timeout = plan.sweep.get("run_timeout_s")
        try:
            with progress.bar_safe_output():
                if serial:
                    child = Isolated(ctx, timeout)
                    child.start()
                    try:
                        for spec in pending:
                            on_summary(child.run(spec))
                            if stop():
                                break
                    finally:
                        child.close()
                else:
                    ray_backend.run(pending, ctx, plan.ray, root, plan.sweep.get("batch_size"),
                                    on_summary, tick=progress.tick, starting=progress.starting,
                                    stop=stop, timeout_s=timeout)
        finally:
            progress.close()
        stopped = stop() and len(rows) < len(plan.runs)
        if stopped:  # runs a cancelled Ray task finished anyway are complete on disk: keep them
            for spec in pending:
                if spec.key not in rows:
                    row = results.read_row(results.run_dir(plan.results_dir, spec.study,
                                                           spec.key))
                    if row is not None:
                        rows[spec.key] = row
    else:
        progress.close()
    ordered = [results.sweep_row(rows[s.key], s.columns, plan.groups)
               for s in plan.runs if s.key in rows]
    runs_paths: dict[str, Path] = {}
    if gather:
        for study in plan.studies:
            keys = {s.key for s in plan.study_runs(study)}
            mine = [r for r in ordered if r["key"] in keys]
            runs_paths[study] = results.gather(mine, plan.results_dir / study / results.RUNS)
            _manifest(plan, study, rows, pending, argv, started_at, stopped)
    failed = sum(1 for s in plan.runs if s.key in rows and rows[s.key].get("status") != "ok")
    return SweepOutcome(study=plan.study, total=len(plan.runs), skipped=skipped,
                        done=progress.done, failed=failed,
                        runs_path=runs_paths.get(plan.study), rows=ordered, failures=failures,
                        wall_s=time.perf_counter() - t0, runs_paths=runs_paths, stopped=stopped,
                        not_run=len(plan.runs) - len(rows))


def _other_studies(plan: Plan) -> list[str]:
    """The study folders of ``plan``'s results_dir that hold runs and are not its own: where a
    run of the same key may already be complete."""
    try:
        entries = sorted(os.listdir(plan.results_dir))
    except OSError:
        return []
    own = set(plan.studies)
    return [e for e in entries if e not in own and (plan.results_dir / e / "runs").is_dir()]


def _adopt(plan: Plan, spec: RunSpec, path: Path, donors: list[str]) -> dict[str, Any] | None:
    """The row of ``spec``'s run copied from another study of the same results_dir that
    completed a run of the same key, or None if none did.

    The key hashes the config (seed included), the code and the task, so that run's results
    are this run's, bit for bit: its files are copied (``results.copy_run``), with this study's
    bookkeeping columns and provenance (``reused_from`` names the study). A traced run is not
    adopted: its trace keys are its own (``tracing.satisfied``)."""
    if spec.trace is not None:
        return None
    for other in donors:
        src = results.run_dir(plan.results_dir, other, spec.key)
        if not (src / results.MANIFEST).exists():
            continue
        stored = results.read_row(src)
        if stored is None or stored.get("status") != "ok":
            continue
        with results.claim(path, owner("adopt")) as waited:
            if waited:  # another sweep of this study held it: it may have completed it
                mine = results.read_row(path)
                if mine is not None and mine.get("status") == "ok":
                    return mine
            results.prepare(path)
            # The row this study's run would have: its bookkeeping and group choices first,
            # then the run's own columns (the same code version: it is in the key).
            row = base_row(spec, plan.code_version, "ok", None)
            row.update((k, v) for k, v in stored.items()
                       if k not in row and k not in plan.groups)
            try:
                prov = json.loads((src / results.PROVENANCE).read_bytes())
            except (OSError, ValueError):
                prov = {}
            prov.update(study=spec.study, replicate=spec.replicate, seed=spec.seed,
                        base_seed=spec.base_seed, reused_from=other)
            if results.copy_run(src, path, row=row, provenance=prov):
                return row
            results.prepare(path)  # the donor changed under us: this run is to be done
    return None


def check_writable(plan: Plan) -> None:
    """Every study's folder can be made and written, before Ray starts or any run does: else
    a WriteError naming the folder (the CLI's exit 2), not a traceback per run. Leaves nothing
    behind: it writes a file in the nearest folder that exists, and removes it."""
    import tempfile

    for study in plan.studies:
        runs = plan.results_dir / study / "runs"
        with results.writing(runs):
            existing = runs
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            if not existing.is_dir():
                raise NotADirectoryError(20, f"{existing} is not a directory")
            with tempfile.NamedTemporaryFile(dir=existing, prefix=".disco-write-probe-"):
                pass


def _manifest(plan: Plan, study: str, rows: dict[str, dict[str, Any]], pending: list[RunSpec],
              argv: list[str] | None, started_at: datetime, stopped: bool) -> None:
    ran = {s.key for s in pending}
    runs = []
    for spec in plan.study_runs(study):
        row = rows.get(spec.key)
        state = "not run" if row is None else str(row.get("status"))
        runs.append({"key": spec.key, "replicate": spec.replicate, "seed": spec.seed,
                     "status": state, "skipped": spec.key not in ran, **spec.columns})
    results.write_sweep_manifest(plan.results_dir / study, {
        "study": study, "command": argv or [], "cwd": os.getcwd(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "ended_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": plan.code_version, "task": plan.sweep.get("task"),
        "config_search_path": list(plan.search), "stopped_at_first_failure": stopped,
        "runs": runs,
    })


def run_jobs(jobs: Sequence[Sequence[str]], *, planner: Planner | None = None,
             serial: bool | None = None, gather: bool = False,
             argv: list[str] | None = None, stream: TextIO | None = None
             ) -> tuple[Plan, SweepOutcome]:
    """Plan one config per override list and run what is not complete yet.

    Same planner, keys and cache as ``disco -m``: a run already done by any sweep is reused.
    ``gather=False`` (the default) leaves the studies' ``runs.parquet`` alone (a tuner's trial
    is not a sweep); read the rows from the outcome or with ``disco.results.load``.
    """
    plan = (planner or Planner()).plan_jobs(jobs)
    return plan, run_sweep(plan, argv=argv, serial=serial, gather=gather, stream=stream)
