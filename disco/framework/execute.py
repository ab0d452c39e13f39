"""Run a batch of runs and write each run's files: the body of a Ray task, or of a serial loop.

The same function runs in both places, so serial and Ray sweeps produce the same rows. It takes
plain, already validated config dicts (composed once by the driver), rebuilds the SimConfig
(cheap) and calls the task, ``disco.runner:simulate`` unless ``sweep.task`` says otherwise. A
run that raises becomes a row with ``status=failed`` and its traceback; the batch goes on.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from disco import native
from disco.framework import results, tracing


@dataclass(slots=True)
class RunSpec:
    """One run: a validated SimConfig as a plain dict, with this replicate's seed in it."""

    key: str
    study: str
    config: dict[str, Any]
    replicate: int
    seed: int
    base_seed: int
    # What the plan says about this run: group choices and the value of each override key.
    # The run's own metrics.parquet keeps the choices; the sweep's runs.parquet gets all of
    # them, from the plan that gathers it (a reused run takes the current command's columns).
    columns: dict[str, Any] = field(default_factory=dict)
    # Its trace keys (disco.framework.tracing), None if it writes no trace: not in the key.
    trace: dict[str, Any] | None = None


@dataclass(slots=True)
class RunContext:
    """What every run of a sweep shares; shipped once per Ray task."""

    results_dir: str  # absolute
    task: str
    code_version: str
    provenance: dict[str, Any]
    # The driver's trusted_path(): appended to a worker's own, so a task module the driver
    # finds is found there too (never the working directory).
    sys_path: tuple[str, ...] = ()
    sweep_id: str = ""  # written into each run's claim: the driver finds its own runs' holders


@dataclass(slots=True)
class RunSummary:
    key: str
    status: str  # "ok" | "failed"
    error: str | None
    row: dict[str, Any]


_tasks: dict[str, Callable[[Any], Any]] = {}


def trusted_path(path: list[str] | None = None) -> list[str]:
    """``sys.path`` without the working directory, unless ``$PYTHONPATH`` names it.

    Python puts the working directory first for ``python -m``, ``-c`` and the REPL, and Ray puts
    the driver's on every worker's path (both ahead of the standard library): a ``yaml.py``
    lying there would run instead of PyYAML. Task modules are found on this path alone, in the
    driver, the serial child and every Ray worker, so a sweep resolves them the same way
    wherever it runs.
    """
    cwd = os.getcwd()
    explicit = {os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                if p}
    return [p for p in (sys.path if path is None else path)
            if os.path.abspath(p or os.curdir) != cwd or os.path.abspath(p) in explicit]


@contextmanager
def task_search_path(extra: list[str] | tuple[str, ...] = ()) -> Iterator[None]:
    """``sys.path`` is ``trusted_path()`` (plus ``extra`` at its end) inside the block."""
    saved = sys.path[:]
    sys.path[:] = [*trusted_path(saved), *(p for p in extra if p not in saved)]
    try:
        yield
    finally:
        sys.path[:] = saved


def load_task(path: str, extra_path: tuple[str, ...] = ()) -> Callable[[Any], Any]:
    """``"package.module:function"`` -> the function (cached per process), imported from
    ``trusted_path()`` plus the driver's (``extra_path``, at the end)."""
    fn = _tasks.get(path)
    if fn is None:
        module, sep, name = path.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"sweep.task={path!r}: expected 'module:function'")
        with task_search_path(extra_path):
            fn = getattr(importlib.import_module(module), name)
        _tasks[path] = fn
    return fn


def run_batch(specs: list[RunSpec], ctx: RunContext) -> list[RunSummary]:
    return [run_one(spec, ctx) for spec in specs]


def base_row(spec: RunSpec, code_version: str, status: str, error: str | None
             ) -> dict[str, Any]:
    choices = {k: v for k, v in spec.columns.items() if "." not in k}
    return {
        "key": spec.key, "study": spec.study, "status": status,
        "replicate": spec.replicate, "seed": spec.seed, "base_seed": spec.base_seed,
        **choices,
        "error": error, "code_version": code_version,
    }


@cache
def _host_ip() -> str | None:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def where() -> dict[str, Any]:
    """Which machine and process ran a run: Ray's node id and IP on a Ray worker (or in a
    process where Ray is initialized), else this host's name and address; and the pid."""
    node_id, node_ip = None, _host_ip()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        node_id = ray.get_runtime_context().get_node_id()
        node_ip = ray.util.get_node_ip_address()
    return {"host": socket.gethostname(), "node_id": node_id, "node_ip": node_ip,
            "pid": os.getpid()}


def _finish_row(row: dict[str, Any], spec: RunSpec, run_wall: float | None,
                started: datetime | None, ended: datetime) -> dict[str, Any]:
    row.update({"run_wall_s": run_wall, "started_at": started, "ended_at": ended, **where()})
    row[results.CONFIG_JSON] = results.config_json(spec.config)
    return row


def owner(sweep_id: str) -> dict[str, Any]:
    """What a run's claim records: who writes it (``results.holder`` reads it back)."""
    return {"sweep": sweep_id, "pid": os.getpid(), "host": socket.gethostname(),
            "since": time.time()}


def run_one(spec: RunSpec, ctx: RunContext) -> RunSummary:
    """Run ``spec`` and write its files, holding its claim. If another process held the claim
    (a second sweep of the same study) and completed the run meanwhile, its row is used."""
    path = results.run_dir(ctx.results_dir, spec.study, spec.key)
    with results.claim(path, owner(ctx.sweep_id)) as waited:
        if waited:
            row = results.read_row(path)
            if row is not None and row.get("status") == "ok":
                return RunSummary(spec.key, "ok", None, row)
        return _run_claimed(spec, ctx, path)


def _run_claimed(spec: RunSpec, ctx: RunContext, path: Any) -> RunSummary:
    from disco.config import SimConfig

    results.prepare(path)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    result, error, trace_path = None, None, None
    try:
        task = load_task(ctx.task, ctx.sys_path)
        if spec.trace is None:
            result = task(SimConfig.from_dict(spec.config))
        else:  # the planner allows a trace only with the default task
            result, trace_path = tracing.simulate(SimConfig.from_dict(spec.config), path,
                                                  spec.trace)
        metrics = dict(result.metrics)
        status = "ok"
    except Exception:
        error = traceback.format_exc()
        result, metrics, status = None, {}, "failed"
    run_wall = time.perf_counter() - t0
    ended = datetime.now(UTC)
    row = base_row(spec, ctx.code_version, status, error)
    # A metric must not overwrite a bookkeeping column (key, status, seed ...).
    row.update({(f"metric_{k}" if k in row or k.startswith("config.")
                 or k == results.CONFIG_JSON else k): v for k, v in metrics.items()})
    if trace_path is not None:
        row[tracing.PATH_COLUMN] = str(trace_path)
    _finish_row(row, spec, run_wall, started, ended)
    try:
        write_outputs(path, spec, ctx, row, result, error, started, ended)
    except results.WriteError:  # the disk, not the run: the sweep stops and says so
        raise
    except Exception:  # e.g. ragged timeline columns: the run's output is unusable
        error = traceback.format_exc()
        results.prepare(path)
        row = _finish_row(base_row(spec, ctx.code_version, "failed", error), spec, run_wall,
                          started, ended)
        status = "failed"
        write_outputs(path, spec, ctx, row, None, error, started, ended)
    return RunSummary(spec.key, status, error, row)


def _iso(t: datetime | None) -> str:
    return "" if t is None else t.isoformat(timespec="milliseconds")


def write_outputs(path: Any, spec: RunSpec, ctx: RunContext, row: dict[str, Any], result: Any,
                  error: str | None, started: datetime | None, ended: datetime) -> None:
    prov = {
        **ctx.provenance,
        "key": spec.key, "study": spec.study, "task": ctx.task,
        "seed": spec.seed, "base_seed": spec.base_seed, "replicate": spec.replicate,
        "host": row["host"], "node_id": row["node_id"], "node_ip": row["node_ip"],
        "pid": row["pid"],
        "core": native.describe(),  # compiled or the Python sources (same results, not speed)
        "trace": spec.trace,  # the trace keys it was run with (None: no trace written)
        "started_at": _iso(started), "ended_at": _iso(ended), "status": row["status"],
    }
    results.write_run(path, row=row, config=spec.config, provenance=prov, result=result,
                      error=error)


def record_lost(spec: RunSpec, ctx: RunContext, reason: str,
                keep_finished: bool = True, wait_s: float = 30.0) -> RunSummary:
    """A run whose process died or was stopped: keep what it finished (``keep_finished``),
    else write a failed row for it with ``reason``. Its claim died with that process; if
    something still holds it after ``wait_s`` (a subprocess of the task), the failed row is
    returned without being written: the run stays incomplete on disk, to run again."""
    path = results.run_dir(ctx.results_dir, spec.study, spec.key)
    now = datetime.now(UTC)
    row = _finish_row(base_row(spec, ctx.code_version, "failed", reason), spec, None, None, now)
    row.update(host=None, node_id=None, node_ip=None, pid=None)  # the process that died
    try:
        with results.claim(path, owner(ctx.sweep_id), wait_s=wait_s):
            done = results.read_row(path) if keep_finished else None
            if done is not None:  # the worker finished this run before it died
                return RunSummary(spec.key, str(done.get("status")), done.get("error"), done)
            results.prepare(path)
            write_outputs(path, spec, ctx, row, None, reason, None, now)
    except TimeoutError:
        pass
    return RunSummary(spec.key, "failed", reason, row)
