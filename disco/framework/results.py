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
from pathlib import Path
from typing import Any

METRICS = "metrics.parquet"
RUNS = "runs.parquet"


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
    """The metrics row of a complete run, or None if the run is incomplete or unreadable."""
    import polars as pl

    file = path / METRICS
    if not file.exists():
        return None
    try:
        rows = pl.read_parquet(file).to_dicts()
    except Exception:  # a foreign or damaged file: treat the run as not done
        return None
    return rows[0] if rows else None


def gather(rows: list[dict[str, Any]], out: Path) -> Path:
    """All rows of a sweep, in plan order, into one Parquet table (columns: union of all rows)."""
    import polars as pl

    frames = [row_frame(r) for r in rows]
    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(out, df)
    return out
