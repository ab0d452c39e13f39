"""The ``trace`` keys of a sweep: which runs write a trace for Perfetto, and where.

``trace.runs`` is ``none`` (the default), ``first`` (replicate 0 of each distinct config: one
trace per config, not per replicate) or ``all``; ``trace=true`` / ``trace=false`` are short for
``all`` / ``none``. A trace changes no result (``disco/trace.py``), so the trace keys are not in
the run key: a run that is complete but lacks the trace a command asks for (or has one made
with another window) is run again, with the same metrics, to write it. The trace goes to the
run's directory as ``trace.json`` (``trace.gzip=true``: ``trace.json.gz``) and the run's row
records its path (``trace_path``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from disco.config import ConfigError

RUNS = ("none", "first", "all")
SHORTHAND = {"true": "all", "false": "none", **{r: r for r in RUNS}}
PATH_COLUMN = "trace_path"


def apply_shorthand(overrides: list[str]) -> list[str]:
    """``trace=true`` -> ``trace.runs=all`` (and ``false``, ``none``, ``first``, ``all``)."""
    out = []
    for o in overrides:
        key, eq, value = o.partition("=")
        if eq and key.lstrip("+") == "trace":
            runs = SHORTHAND.get(value.strip().lower())
            if runs is None:
                raise ConfigError("trace", value, "expected true or false (or trace.runs="
                                  f"{'|'.join(RUNS)}, trace.window=[from_s,to_s])")
            o = f"trace.runs={runs}"
        out.append(o)
    return out


def options(trace: dict[str, Any] | None, task: str, default_task: str) -> dict[str, Any] | None:
    """The validated trace keys of one job, or None when it traces nothing."""
    t = dict(trace or {})
    runs = t.get("runs", "none")
    if runs not in RUNS:
        raise ConfigError("trace.runs", runs, f"expected one of {', '.join(RUNS)}")
    window = t.get("window")
    if window is not None:
        ok = (isinstance(window, list | tuple) and len(window) == 2
              and all(isinstance(x, int | float) and not isinstance(x, bool) for x in window)
              and 0 <= window[0] < window[1])
        if not ok:
            raise ConfigError("trace.window", window, "expected [from_s, to_s] with "
                              "0 <= from_s < to_s")
        t["window"] = [float(window[0]), float(window[1])]
    counter_ms = t.get("counter_ms", 10.0)
    if not isinstance(counter_ms, int | float) or isinstance(counter_ms, bool) or counter_ms <= 0:
        raise ConfigError("trace.counter_ms", counter_ms, "expected a number > 0")
    if runs == "none":
        return None
    if task != default_task:
        raise ConfigError("trace.runs", runs, f"tracing needs the simulator's own task "
                          f"({default_task}), not sweep.task={task}")
    return {"runs": runs, "window": t.get("window"), "counter_ms": float(counter_ms),
            "gzip": bool(t.get("gzip", False))}


def for_replicate(opts: dict[str, Any] | None, replicate: int) -> dict[str, Any] | None:
    if opts is None or (opts["runs"] == "first" and replicate != 0):
        return None
    return {k: v for k, v in opts.items() if k != "runs"}


def trace_file(run_dir: Path, opts: dict[str, Any]) -> Path:
    return run_dir / ("trace.json.gz" if opts.get("gzip") else "trace.json")


def simulate(cfg: Any, run_dir: Path, opts: dict[str, Any]) -> tuple[Any, Path]:
    """One traced run of ``cfg`` (the default task, with its trace); (result, trace path)."""
    from disco.runner import simulate as run
    from disco.trace import TraceOptions

    path = trace_file(run_dir, opts)
    window = opts.get("window")
    result = run(cfg, trace=TraceOptions(path, tuple(window) if window else None,
                                         opts["counter_ms"]))
    return result, path


def satisfied(row: dict[str, Any], run_dir: Path, opts: dict[str, Any] | None) -> bool:
    """Does this complete run have the trace ``opts`` asks for (always, if it asks none)?"""
    if opts is None:
        return True
    if not row.get(PATH_COLUMN) or not trace_file(run_dir, opts).is_file():
        return False
    try:
        made = json.loads((run_dir / "provenance.json").read_text()).get("trace")
    except (OSError, ValueError):
        return False
    return made == opts
