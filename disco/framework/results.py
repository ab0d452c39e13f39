"""The on-disk layout of results, written so a killed process never leaves a half file.

``<results_dir>/<study>/runs/<key>/`` holds ``timeline.parquet``, ``vms.parquet``,
``tables/<name>.parquet``, ``config.yaml``, ``provenance.json`` (and ``error.txt`` when the run
failed), then ``metrics.parquet`` LAST: a run is complete exactly when its metrics file exists.
Every file is written to a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), so readers see the old file, the new one, or none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

METRICS = "metrics.parquet"
RUNS = "runs.parquet"
SWEEPS = "sweeps"
CONFIG_PREFIX = "config."
TIMES = ("started_at", "ended_at")
# The bookkeeping columns at the head of every row, in this order.
HEAD = ("key", "study", "status", "replicate", "seed", "base_seed")


def config_columns(config: dict[str, Any], prefix: str = CONFIG_PREFIX) -> dict[str, Any]:
    """A run's whole config as flat columns, ``pl.json_normalize`` style: ``config.machine.nodes``.

    A list of mappings is flattened by index (``config.workload.vms.0.count``: the first VM
    group's count); a list of plain values stays one list column (``config.x = [1, 2]``);
    anything else (mixed lists) is one JSON string column. Empty mappings give no column.
    """
    out: dict[str, Any] = {}
    _flatten_into(out, config, prefix)
    return out


def _flatten_into(out: dict[str, Any], value: Any, name: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten_into(out, v, f"{name}{k}.")
        return
    key = name[:-1]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten_into(out, v, f"{name}{i}.")
    elif isinstance(value, list):
        kinds = {type(v) for v in value if v is not None}
        if kinds <= {int, float} or len(kinds) == 1 and kinds <= {bool, str}:
            out[key] = [float(v) for v in value] if kinds == {int, float} else value
        else:
            out[key] = json.dumps(value, sort_keys=True)
    else:
        out[key] = value


def run_dir(results_dir: str | Path, study: str, key: str) -> Path:
    return Path(results_dir) / study / "runs" / key


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_parquet(path: Path, frame: Any) -> None:
    """``frame``: a polars DataFrame or plain columns (``dict[str, list]``)."""
    import polars as pl

    if not isinstance(frame, pl.DataFrame):
        frame = pl.DataFrame(frame, strict=False)
    tmp = _tmp(path)
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def row_frame(row: dict[str, Any]) -> Any:
    import polars as pl

    return pl.from_dicts([row], infer_schema_length=None)


def prepare(path: Path) -> None:
    """Make ``path`` an incomplete run dir: metrics first out, stale temp files and errors gone."""
    path.mkdir(parents=True, exist_ok=True)
    (path / METRICS).unlink(missing_ok=True)
    for stale in path.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    (path / "error.txt").unlink(missing_ok=True)


def write_run(path: Path, *, row: dict[str, Any], config: dict[str, Any],
              provenance: dict[str, Any], result: Any = None, error: str | None = None) -> None:
    """Write one run's files; ``metrics.parquet`` last, as the completion mark."""
    import yaml

    key = row["key"]
    if result is not None:
        for name, cols in (("timeline", result.timeline), ("vms", result.vms)):
            if cols:
                write_parquet(path / f"{name}.parquet", _with_key(cols, key))
        if result.tables:
            (path / "tables").mkdir(exist_ok=True)
            for name, cols in result.tables.items():
                write_parquet(path / "tables" / f"{name}.parquet", _with_key(cols, key))
    if error is not None:
        write_bytes(path / "error.txt", error.encode())
    # libyaml's emitter: the pure-Python one costs ~15 ms for a full SimConfig.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(config, Dumper=dumper, sort_keys=False)
    write_bytes(path / "config.yaml", text.encode())
    write_bytes(path / "provenance.json", json.dumps(provenance, indent=2, default=str).encode())
    write_parquet(path / METRICS, row_frame(row))


def _with_key(cols: dict[str, list], key: str) -> dict[str, list]:
    n = len(next(iter(cols.values()), []))
    return {"key": [key] * n, **cols}


def read_row(path: Path) -> dict[str, Any] | None:
    """The metrics row of a complete run, or None if the run is incomplete or unreadable.

    Rows written before the times were typed hold ISO strings: they come back as datetimes.
    """
    import polars as pl

    file = path / METRICS
    if not file.exists():
        return None
    try:
        rows = pl.read_parquet(file).to_dicts()
    except Exception:  # a foreign or damaged file: treat the run as not done
        return None
    if not rows:
        return None
    row = rows[0]
    for t in TIMES:
        if isinstance(row.get(t), str):
            row[t] = datetime.fromisoformat(row[t]) if row[t] else None
    return row


def is_plan_column(name: str, groups: Iterable[str], old_format: bool) -> bool:
    """Is ``name`` a column a sweep's plan decides (a group choice; in rows written before the
    config was flattened, also an override value ``policy.gang``)? Those are re-computed from
    the current plan when a sweep gathers its runs, never carried over from an older command."""
    return name in groups or (old_format and "." in name
                              and not name.startswith(CONFIG_PREFIX))


def sweep_row(stored: dict[str, Any], columns: dict[str, Any],
              groups: Iterable[str]) -> dict[str, Any]:
    """A run's row in a sweep's runs.parquet: its own row with the plan's columns put in, and
    without the flattened config (``disco.results.load`` has it: the sweep's table stays the
    plan's columns and the metrics, so its varying columns are what the sweep varied)."""
    groups = frozenset(groups)
    old = not any(k.startswith(CONFIG_PREFIX) for k in stored)
    rest = {k: v for k, v in stored.items()
            if k not in columns and not is_plan_column(k, groups, old)
            and not k.startswith(CONFIG_PREFIX)}
    head = {k: rest.pop(k) for k in HEAD if k in rest}
    return {**head, **columns, **rest}


def gather(rows: list[dict[str, Any]], out: Path) -> Path:
    """All rows of a sweep, in plan order, into one Parquet table (columns: union of all rows)."""
    import polars as pl

    frames = [row_frame(r) for r in rows]
    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(out, df)
    return out


def write_sweep_manifest(study_dir: Path, manifest: dict[str, Any]) -> Path:
    """``<study>/sweeps/<UTC time>-<pid>.json``: what one sweep planned and what became of it.

    ``runs.parquet`` is only the last sweep's table; these manifests keep every sweep's (the
    command, its plan's columns per run, which runs ran, were skipped or failed).
    """
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S.%fZ")
    path = study_dir / SWEEPS / f"{stamp}-{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, json.dumps(manifest, indent=1, default=str).encode())
    return path
