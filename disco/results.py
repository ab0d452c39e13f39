"""Every run of one or more studies as one clean polars table::

    import disco.results
    df = disco.results.load("cpu_balance").collect()          # one study
    df = disco.results.load("*").filter(pl.col("status") == "ok").collect()   # all of them

``load`` reads each run's own ``metrics.parquet`` (``results/<study>/runs/<key>/``), so it
returns *every* run a study ever ran, not just the last sweep's ``runs.parquet``. Columns:

- ``key``, ``study``, ``status`` (``ok`` / ``failed``), ``error`` (the traceback or null),
  ``replicate``, ``seed``, ``base_seed``, the group choices of the sweep that ran it
  (``machine``, ``policy`` ...), ``code_version``;
- the metrics; ``run_wall_s``, ``started_at`` / ``ended_at`` as ``Datetime("us", "UTC")``;
- where it ran: ``host``, ``node_id`` and ``node_ip`` (Ray's node; serial runs: null and this
  host's address) and ``pid``;
- the run's whole config under ``config.``, flattened like ``pl.json_normalize``:
  ``config.machine.nodes``, ``config.policy.gang``, ``config.workload.vms.0.count`` (a run's
  file holds it as one JSON column, ``config_json``, flattened here).

Several studies are concatenated with ``how="diagonal_relaxed"`` (a column one study lacks is
null there; int and float columns meet as float). Runs written before the config was flattened
get their ``config.`` columns from their ``config.yaml``. Importing this module is cheap: polars
is imported by ``load``. For one run in memory, ``SimResult.to_polars()``.
"""

from __future__ import annotations

import glob as _glob
from pathlib import Path
from typing import Any

__all__ = ["load", "study_dirs"]

_TIMES = ("started_at", "ended_at")
_ALWAYS = {"status": "String", "error": "String", "node_id": "String", "node_ip": "String",
           "host": "String", "pid": "Int64"}


def study_dirs(study_or_glob: str | Path = "*", results_dir: str | Path = "results"
               ) -> list[Path]:
    """The study directories ``load`` reads: a study directory itself, a study name under
    ``results_dir``, or a glob of either (``"cpu_*"``, ``"results/*"``, ``"/data/r/*"``)."""
    text = str(study_or_glob)
    candidates: list[Path] = []
    if Path(text).is_dir():
        candidates.append(Path(text))
    else:
        candidates += [Path(p) for p in sorted(_glob.glob(text))]
        candidates += [Path(p) for p in sorted(_glob.glob(str(Path(results_dir) / text)))]
    out = []
    for c in candidates:
        c = c.resolve()
        if (c / "runs").is_dir() and c not in out:
            out.append(c)
    return out


def load(study_or_glob: str | Path = "*", results_dir: str | Path = "results") -> Any:
    """Every run of the matching studies as a ``polars.LazyFrame`` (see the module doc).

    Raises FileNotFoundError naming what was searched when nothing matches.
    """
    import polars as pl

    dirs = study_dirs(study_or_glob, results_dir)
    if not dirs:
        raise FileNotFoundError(f"no study matches {str(study_or_glob)!r} (as a directory, a "
                                f"glob, or under {results_dir}/): a study directory holds runs/")
    frames = [f for d in dirs for f in _study_frames(d)]
    if not frames:
        return pl.DataFrame(schema={k: getattr(pl, v) for k, v in _ALWAYS.items()}).lazy()
    lf = pl.concat(frames, how="diagonal_relaxed")
    schema = lf.collect_schema()
    fix = [(pl.col(c).cast(getattr(pl, t)) if c in schema else
            pl.lit(None, dtype=getattr(pl, t)).alias(c))
           for c, t in _ALWAYS.items() if schema.get(c) != getattr(pl, t)]
    return lf.with_columns(fix) if fix else lf


def _study_frames(study_dir: Path) -> list[Any]:
    """One LazyFrame per distinct file schema (scanned together), old-format runs read eagerly."""
    import polars as pl

    from disco.framework.results import CONFIG_JSON

    by_schema: dict[tuple[tuple[str, Any], ...], list[str]] = {}
    old: list[Path] = []
    for f in sorted((study_dir / "runs").glob("*/metrics.parquet")):
        try:
            schema = pl.read_parquet_schema(f)
        except Exception:  # a damaged or half-copied file: not a complete run
            continue
        if CONFIG_JSON in schema or any(c.startswith("config.") for c in schema):
            by_schema.setdefault(tuple(schema.items()), []).append(str(f))
        else:
            old.append(f)
    frames = [_typed(_flattened(pl.scan_parquet(files)) if (CONFIG_JSON, pl.String) in schema
                     else pl.scan_parquet(files))
              for schema, files in by_schema.items()]
    if old:
        frames.append(_typed(_old_format(old).lazy()))
    return frames


def _flattened(lf: Any) -> Any:
    """Runs whose row holds the config as JSON (``config_json``): that column replaced by the
    config flattened into ``config.`` columns, at the end of the row, typed over all the runs
    (as ``diagonal_relaxed`` types one file per run: int and float meet as float)."""
    import json

    import polars as pl

    from disco.framework.results import CONFIG_JSON, config_columns

    df = lf.collect()
    flat = pl.from_dicts([config_columns(json.loads(t)) if t else {}
                          for t in df[CONFIG_JSON]], infer_schema_length=None)
    rest = df.drop(CONFIG_JSON)
    return (rest.hstack(flat) if flat.width else rest).lazy()


def _typed(lf: Any) -> Any:
    import polars as pl

    schema = lf.collect_schema()
    casts = []
    for t in _TIMES:
        if t not in schema:
            continue
        if schema[t] == pl.String:
            casts.append(pl.col(t).str.to_datetime(time_unit="us", time_zone="UTC",
                                                   strict=False))
        elif schema[t] != pl.Datetime("us", "UTC"):
            casts.append(pl.col(t).cast(pl.Datetime("us", "UTC"), strict=False))
    return lf.with_columns(casts) if casts else lf


def _old_format(files: list[Path]) -> Any:
    """Runs whose row has no ``config.`` columns: drop the per-command override columns (the
    config says the same, for every run alike) and flatten their ``config.yaml``."""
    import polars as pl
    import yaml

    from disco.framework.results import config_columns

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    rows = []
    for f in files:
        try:
            row = pl.read_parquet(f).to_dicts()[0]
        except Exception:
            continue
        row = {k: v for k, v in row.items() if "." not in k}
        cfg_file = f.parent / "config.yaml"
        if cfg_file.exists():
            row.update(config_columns(yaml.load(cfg_file.read_text(), Loader=loader) or {}))
        rows.append(row)
    frames = [pl.from_dicts([r], infer_schema_length=None) for r in rows]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
