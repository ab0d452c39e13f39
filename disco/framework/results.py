"""The on-disk layout of results: written so a killed process never leaves a half file, owned
while written, and checked before it is trusted.

``<results_dir>/<study>/runs/<key>/`` holds ``timeline.parquet``, ``vms.parquet``,
``tables/<name>.parquet``, ``config.yaml``, ``provenance.json`` (and ``error.txt`` when the run
failed), ``metrics.parquet``, then ``manifest.json`` LAST: the key and each file's size and
sha256. A run is complete exactly when its manifest names its folder and every file it lists
is there with that size and hash (``verify``): a metrics file copied from another run, a deleted
``config.yaml`` or a truncated timeline is a run to redo, whatever the files' times say.

Every file is written to a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), so readers see the old file, the new one, or none. A run is
written only by the process that holds its claim (``claim``: an ``flock`` on ``.lock`` in its
folder, which the kernel releases when that process ends, however it ends), so two sweeps of one
study never write, or clean, one run at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

METRICS = "metrics.parquet"
MANIFEST = "manifest.json"
PROVENANCE = "provenance.json"
LOCK = ".lock"
RUNS = "runs.parquet"
SWEEPS = "sweeps"
CONFIG_PREFIX = "config."
# A run's whole config, as JSON, in its metrics row: one column instead of ~190 flattened ones
# (a one-row parquet file costs per column to write and to read); ``disco.results.load``
# flattens it into ``config.`` columns (``config_columns``).
CONFIG_JSON = "config_json"
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


def config_json(config: dict[str, Any]) -> str:
    return json.dumps(config, separators=(",", ":"), default=str)


def run_dir(results_dir: str | Path, study: str, key: str) -> Path:
    return Path(results_dir) / study / "runs" / key


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_parquet(path: Path, frame: Any) -> None:
    """``frame``: a polars DataFrame or plain columns (``dict[str, list]``)."""
    write_bytes(path, _parquet_bytes(frame))


def _parquet_bytes(frame: Any) -> bytes:
    import polars as pl

    if not isinstance(frame, pl.DataFrame):
        frame = pl.DataFrame(frame, strict=False)
    # Encoded in memory, written by Python: a full disk is then an OSError (ENOSPC), where
    # polars writing the file itself says ComputeError.
    buf = io.BytesIO()
    if frame.height == 1:
        # A run's metrics row: ~260 columns of one value each, where a dictionary, statistics
        # and compression per column buy nothing and cost a page each (polars' writer has no
        # switch for them); pyarrow's schema and values read back the same
        # (test_a_one_row_table_reads_back_as_written; the timings are in the commit).
        import pyarrow.parquet as pq

        pq.write_table(frame.to_arrow(), buf, use_dictionary=False, write_statistics=False,
                       compression="none")
    else:
        frame.write_parquet(buf)
    return buf.getvalue()


def row_frame(row: dict[str, Any]) -> Any:
    import polars as pl

    return pl.from_dicts([row], infer_schema_length=None)


class WriteError(OSError):
    """Results could not be written (a full disk, a folder that is not writable): the sweep
    stops, and the CLI says which file (exit 2), instead of failing run after run. Its args are
    OSError's (errno, message), so it survives pickling from a Ray worker."""


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """OSErrors of writing ``path`` become a WriteError naming it."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc


@contextmanager
def claim(path: Path, owner: dict[str, Any], wait_s: float | None = None) -> Iterator[bool]:
    """Own run dir ``path`` while the block writes it; yields whether another process held it
    first (we waited for it: it may have completed the run meanwhile).

    An ``flock`` on ``path/.lock``: the kernel releases it when the holder exits, a SIGKILL
    too, so a dead process's claim is taken over at once. ``owner`` (pid, host, sweep) is
    written into the file for whoever wonders who holds it (``holder``). ``wait_s``: give up
    (TimeoutError) after waiting that long; None waits as long as the holder runs.
    """
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            waited = True
            if wait_s is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                _poll_lock(fd, wait_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        yield waited
    finally:
        os.close(fd)


def _poll_lock(fd: int, wait_s: float) -> None:
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the claim is still held after {wait_s:g} s") from None
            time.sleep(0.05)


def holder(path: Path) -> dict[str, Any] | None:
    """Who holds the claim on run dir ``path`` now (what ``claim`` wrote), or None if nobody."""
    try:
        fd = os.open(path / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held
            try:
                return json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                return {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def prepare(path: Path) -> None:
    """Make ``path`` an empty, incomplete run dir (its claim kept): the manifest first out, then
    every file an earlier attempt left, temporary ones and ``tables/`` included."""
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
        (path / MANIFEST).unlink(missing_ok=True)
        for entry in path.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)


def _file_digest(file: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def write_manifest(path: Path, key: str, files: list[Path]) -> None:
    """The completion mark, written last: the key and each file's size and sha256."""
    listed = {str(f.relative_to(path)): _file_digest(f) for f in files}
    write_bytes(path / MANIFEST, json.dumps({"key": key, "files": listed}, indent=1).encode())


def verify(path: Path) -> bool:
    """Is run dir ``path`` complete and untouched: a manifest naming this folder, and every file
    it lists there with its size and content hash?"""
    try:
        manifest = json.loads((path / MANIFEST).read_bytes())
        files = manifest["files"]
        if manifest["key"] != path.name or METRICS not in files:
            return False
        for rel, want in files.items():
            file = path / rel
            if file.stat().st_size != want["size"] or _file_digest(file) != want:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def write_run(path: Path, *, row: dict[str, Any], config: dict[str, Any],
              provenance: dict[str, Any], result: Any = None, error: str | None = None) -> None:
    """Write one run's files, then its manifest, last, as the completion mark. Call it holding
    the run's ``claim``, after ``prepare``. An OSError (a full disk) is a WriteError."""
    import yaml

    key = row["key"]
    files: list[Path] = []

    def put(file: Path, data: Any) -> None:
        with writing(file):
            if isinstance(data, bytes):
                write_bytes(file, data)
            else:
                write_parquet(file, data)
        files.append(file)

    if result is not None:
        for name, cols in (("timeline", result.timeline), ("vms", result.vms)):
            if cols:
                put(path / f"{name}.parquet", _with_key(cols, key))
        if result.tables:
            with writing(path / "tables"):
                (path / "tables").mkdir(exist_ok=True)
            for name, cols in result.tables.items():
                put(path / "tables" / f"{name}.parquet", _with_key(cols, key))
    if error is not None:
        put(path / "error.txt", error.encode())
    # libyaml's emitter: the pure-Python one costs ~15 ms for a full SimConfig.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    put(path / "config.yaml", yaml.dump(config, Dumper=dumper, sort_keys=False).encode())
    put(path / PROVENANCE, provenance_bytes(provenance))
    put(path / METRICS, row_frame(row))
    with writing(path / MANIFEST):
        write_manifest(path, key, files)


def provenance_bytes(provenance: dict[str, Any]) -> bytes:
    return json.dumps(provenance, indent=2, default=str).encode()


def copy_run(src: Path, dst: Path, *, row: dict[str, Any], provenance: dict[str, Any]) -> bool:
    """Make ``dst`` a complete run holding complete run ``src``'s files, with ``row`` as its
    metrics row and ``provenance`` as its provenance: a run of the same key (same config, code
    and task, so the same results bit for bit) that another study already ran. Call it holding
    ``dst``'s claim, after ``prepare``. Every file is copied as the bytes ``src``'s manifest
    hashed; if one is not (``src`` changed meanwhile), nothing is marked complete and it
    returns False."""
    listed = json.loads((src / MANIFEST).read_bytes())["files"]
    files: list[Path] = []
    for rel, want in listed.items():
        target = dst / rel
        if rel == METRICS:
            data = _parquet_bytes(row_frame(row))
        elif rel == PROVENANCE:
            data = provenance_bytes(provenance)
        else:
            data = (src / rel).read_bytes()
            if len(data) != want["size"] or hashlib.sha256(data).hexdigest() != want["sha256"]:
                return False
        with writing(target):
            target.parent.mkdir(exist_ok=True)  # tables/
            write_bytes(target, data)
        files.append(target)
    with writing(dst / MANIFEST):
        write_manifest(dst, row["key"], files)
    return True


def _with_key(cols: dict[str, list], key: str) -> dict[str, list]:
    n = len(next(iter(cols.values()), []))
    return {"key": [key] * n, **cols}


def read_row(path: Path) -> dict[str, Any] | None:
    """The metrics row of a complete run (``verify``), or None if the run is incomplete,
    damaged, or its row is not this folder's key.

    Rows written before the times were typed hold ISO strings: they come back as datetimes.
    """
    import polars as pl

    if not verify(path):
        return None
    try:
        rows = pl.read_parquet(path / METRICS).to_dicts()
    except Exception:  # a foreign or damaged file: treat the run as not done
        return None
    if len(rows) != 1 or rows[0].get("key") != path.name:
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
    old = CONFIG_JSON not in stored and not any(k.startswith(CONFIG_PREFIX) for k in stored)
    rest = {k: v for k, v in stored.items()
            if k not in columns and not is_plan_column(k, groups, old)
            and not k.startswith(CONFIG_PREFIX) and k != CONFIG_JSON}
    head = {k: rest.pop(k) for k in HEAD if k in rest}
    return {**head, **columns, **rest}


def gather(rows: list[dict[str, Any]], out: Path) -> Path:
    """All rows of a sweep, in plan order, into one Parquet table (columns: union of all rows)."""
    import polars as pl

    frames = [row_frame(r) for r in rows]
    df = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    with writing(out):
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
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, json.dumps(manifest, indent=1, default=str).encode())
    return path
