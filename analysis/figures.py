"""Shared plumbing of the paper-figure scripts (``analysis/<experiment>.py``).

Every figure script reads one study's ``runs.parquet`` with polars (``read_runs``; per-run
tables with ``read_run_tables``), draws with seaborn from ``df.to_pandas()`` with the report's
one interval method (``CI``: the Student-t interval of ``verdicts.t_interval``), marks the
paper's number with ``reference``, puts one legend outside the axes (``legend_outside``), marks
what has no data (``mark_missing``), writes PNG + SVG with ``save`` and returns a ``Finding``:
what the paper reported, what we measured, and the falsifiable checks of ``verdicts``.
``report.py`` collects the findings; ``main`` gives each script the same command line:

    python analysis/<experiment>.py RESULTS_DIR [--out DIR]

RESULTS_DIR is a study directory (``results/overhead``) or the results root (``results``, then
the script's own study under it). Figures go to ``RESULTS_DIR/figures`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import polars as pl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import verdicts as V  # noqa: E402

CI = V.t_errorbar  # seaborn errorbar: the t interval the tables and verdicts use
GROUPS = ("machine", "cells", "workload", "faults", "policy", "sim", "experiment")
RUNS = "runs.parquet"
MISSING = "none completed"


@dataclass(slots=True)
class Finding:
    """One section of the report: the paper's numbers, ours, and the checks on them."""

    figure: str
    title: str
    paper: str  # what the paper reported
    measured: str  # what we measured, in one line
    checks: list[V.Check] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats shown under the figure
    tables: list[tuple[str, pl.DataFrame]] = field(default_factory=list)  # shown in full

    @property
    def verdict(self) -> str:
        """The checks' verdicts in one phrase: ``agrees``, ``2 agree, 1 disagrees`` ..."""
        if not self.checks:
            return "n/a"
        counts = Counter(c.verdict for c in self.checks)
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{k} {counts[k]}" for k in V.VERDICTS if counts[k])


def study_dir(results_dir: Path, study: str) -> Path:
    """``results_dir`` itself if it holds a runs.parquet, else ``results_dir/study``."""
    results_dir = Path(results_dir)
    return results_dir if (results_dir / RUNS).exists() else results_dir / study


def read_runs(path: Path) -> pl.DataFrame:
    """The successful runs of one study (a study directory or its runs.parquet)."""
    path = Path(path)
    if path.is_dir():
        path = path / RUNS
    df = pl.read_parquet(path)
    return df.filter(pl.col("status") == "ok") if "status" in df.columns else df


def run_path(study: Path, key: str) -> Path:
    """A run's directory (``disco.framework.results.run_dir``)."""
    from disco.framework.results import run_dir

    study = Path(study)
    return run_dir(study.parent, study.name, key)


def read_run_tables(study: Path, runs: pl.DataFrame, name: str,
                    columns: Sequence[str] = ()) -> pl.DataFrame:
    """One per-run table (``vms``, ``timeline`` or ``tables/<name>``) of every run in ``runs``,
    concatenated, with the runs' ``columns`` (e.g. policy, replicate) joined on ``key``."""
    file = f"{name}.parquet" if name in ("vms", "timeline") else f"tables/{name}.parquet"
    paths = [p for key in runs["key"].unique(maintain_order=True).to_list()
             if (p := run_path(study, key) / file).exists()]
    table = concat_tables(paths)
    if table.is_empty():
        return pl.DataFrame()
    keep = ["key", *[c for c in columns if c in runs.columns and c != "key"]]
    return table.join(runs.select(keep).unique("key", maintain_order=True), on="key", how="left")


def concat_tables(paths: Sequence[Path]) -> pl.DataFrame:
    """The non-empty tables of ``paths`` concatenated in order, as ``pl.concat(how=
    "diagonal_relaxed")`` of each file read alone gives them (columns by name in the order
    they first appear, missing ones null, dtypes widened to their supertype).

    A study has hundreds of runs, each with its own table. The files' footers say which are
    empty and what schema each has; when the non-empty ones all have the same schema (names,
    order and types) they are read in one multi-file read, which polars does in parallel at
    a fraction of the cost of one ``read_parquet`` call per file and which gives the same
    frame; otherwise each is read alone and concatenated as above."""
    import pyarrow.parquet as pq

    full = [(p, m.schema.to_arrow_schema()) for p in paths
            if (m := pq.read_metadata(p)).num_rows]
    if not full:
        return pl.DataFrame()
    if all(schema.equals(full[0][1]) for _, schema in full):
        return pl.read_parquet([str(p) for p, _ in full], glob=False, hive_partitioning=False)
    return pl.concat([pl.read_parquet(p) for p, _ in full], how="diagonal_relaxed")


def runtime_all(vms: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """Per run (``key``): ``vm_runtime_all_s``, the mean time in the system of every VM that
    was not lost: finish - arrival, or end of the run - arrival for a VM still unfinished (so a
    run that leaves its slowest VMs unfinished cannot read as fast, as a mean over the finished
    ones does)."""
    if vms.is_empty():
        return pl.DataFrame({"key": [], "vm_runtime_all_s": []},
                            schema={"key": pl.Utf8, "vm_runtime_all_s": pl.Float64})
    end = runs.select("key", pl.col("sim_time_s").alias("_end"))
    return (vms.join(end, on="key", how="left")
            .filter(pl.col("status") != "lost")
            .with_columns(pl.when(pl.col("status") == "done").then(pl.col("finish_s"))
                          .otherwise(pl.col("_end")).alias("_until"))
            .group_by("key", maintain_order=True)
            .agg((pl.col("_until") - pl.col("arrival_s")).mean().alias("vm_runtime_all_s")))


def with_runtime_all(study: Path, runs: pl.DataFrame) -> pl.DataFrame:
    """``runs`` with ``vm_runtime_all_s`` (``runtime_all``) read from each run's vms table."""
    vms = read_run_tables(study, runs, "vms")
    return runs.join(runtime_all(vms, runs), on="key", how="left")


def config_columns(df: pl.DataFrame) -> list[str]:
    """Columns that describe a run's configuration: group choices and dotted overrides."""
    return [c for c in df.columns if c in GROUPS or "." in c]


def variant_columns(df: pl.DataFrame) -> list[str]:
    """Configuration columns that differ between runs (what the study swept)."""
    return [c for c in config_columns(df) if df[c].n_unique() > 1]


def mean_ci(df: pl.DataFrame, by: list[str], metrics: list[str]) -> pl.DataFrame:
    """Long table: ``by`` columns, metric, n, mean, ci95 (half-width of the t interval)."""
    # One grouping for every metric (each group's values as a list per metric), the rows
    # metric by metric, the groups in order of first appearance.
    values = [f"\0{i}" for i in range(len(metrics))]
    groups = df.group_by(by, maintain_order=True).agg(
        pl.col(m).cast(pl.Float64).alias(v) for m, v in zip(metrics, values, strict=True))
    keys = groups.select(by).rows()
    rows = []
    for m, v in zip(metrics, values, strict=True):
        for key, sample in zip(keys, groups[v].to_list(), strict=True):
            iv = V.t_interval(sample)
            half = (iv.hi - iv.lo) / 2 if iv.valid else None
            rows.append({**dict(zip(by, key, strict=True)), "metric": m, "n": iv.n,
                         "mean": None if math.isnan(iv.mean) else iv.mean, "ci95": half})
    if not rows:
        return pl.DataFrame()
    return pl.from_dicts(rows, infer_schema_length=None)


def replicates(df: pl.DataFrame) -> tuple[int, int]:
    """Fewest and most runs per configuration (what the study swept): the n behind a mean."""
    if df.is_empty():
        return 0, 0
    by = variant_columns(df) or ["study"]
    n = df.group_by(by).len()["len"]
    return int(n.min()), int(n.max())


def subplots(n: int = 1, width: float = 5.0, height: float = 4.0):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), layout="constrained",
                             squeeze=False)
    return fig, list(axes[0])


def reference(ax, value: float, label: str, *, axis: str = "y", color: str = "crimson",
              style: str = "--") -> None:
    """The paper's number as a labelled line (its entry goes in ``legend_outside``)."""
    line = ax.axhline if axis == "y" else ax.axvline
    line(value, color=color, linestyle=style, linewidth=1.2, label=label)


def legend_outside(fig, axes, title: str | None = None, ncols: int = 4) -> None:
    """One legend for the whole figure, below the axes (never over the data): the entries of
    every panel, each label once; the panels' own legends are removed."""
    handles, labels = [], []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label and not label.startswith("_") and label not in labels:
                handles.append(h)
                labels.append(label)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", title=title,
                   ncols=min(ncols, len(labels)), fontsize=8, title_fontsize=8, frameon=False)


def side_legend(ax, title: str | None = None) -> None:
    """The panel's legend to the right of its axes (never over the data), titled in words."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), title=title,
                  fontsize=8, title_fontsize=8, frameon=False)


def mark_missing(ax, data: pl.DataFrame, x: str, y: str, order: Sequence[Any],
                 hue: str | None = None, hue_order: Sequence[Any] = (),
                 kind: str = "bar", dodge: float = 0.0, text: str = MISSING) -> int:
    """Write ``text`` where an (x, hue) category of a categorical plot has no finite ``y``.

    Positions follow seaborn's: bar ``j`` of ``k`` hue levels sits at ``i - 0.4 + (j + 0.5) *
    0.8 / k``; a dodged point at ``i + (j / (k - 1) - 0.5) * dodge``. Returns how many were
    marked."""
    levels = list(hue_order) if hue else [None]
    k = len(levels)
    marked = 0
    for i, xv in enumerate(order):
        for j, hv in enumerate(levels):
            sub = data.filter(pl.col(x) == xv)
            if hue:
                sub = sub.filter(pl.col(hue) == hv)
            vals = sub[y].cast(pl.Float64) if sub.height else pl.Series([], dtype=pl.Float64)
            if vals.is_finite().any():
                continue
            if kind == "bar":
                pos = i - 0.4 + (j + 0.5) * 0.8 / k if hue else i
            else:
                pos = i + ((j / (k - 1) - 0.5) * dodge if k > 1 else 0.0)
            ax.text(pos, 0.02, text, transform=ax.get_xaxis_transform(), rotation=90,
                    ha="center", va="bottom", fontsize=7, color="dimgray")
            marked += 1
    return marked


def value_ticks(ax, values, axis: str = "x") -> None:
    """Ticks at exactly the swept values, plainly labelled (also on a log axis)."""
    values = sorted({v for v in values if v is not None})
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    setter(values, [f"{v:g}" for v in values])
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_locator(matplotlib.ticker.NullLocator())


def save(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    for p in paths:
        fig.savefig(p, dpi=110)
    plt.close(fig)
    return paths


def fmt(x: float | None, spec: str = ".3g") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main(make: Callable[[Path, Path | None], Finding], study: str,
         argv: list[str] | None = None, doc: str | None = None) -> Finding:
    """The command line every figure script shares."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("results_dir", type=Path, help="a study directory or the results root")
    p.add_argument("--out", type=Path, help="figure directory (default RESULTS_DIR/figures)")
    a = p.parse_args(argv)
    finding = make(study_dir(a.results_dir, study), a.out)
    for path in finding.paths:
        print(path)
    print(f"{finding.title}: paper {finding.paper}; measured {finding.measured}; "
          f"{finding.verdict}")
    for c in finding.checks:
        print(f"  [{c.verdict}] ({c.kind}) {c.claim}: {c.measured}")
    for caption, table in finding.tables:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=60,
                       tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            print(f"{caption}:\n{table}")
    return finding


def out_dir_for(study: Path, out: Path | None) -> Path:
    return Path(out) if out is not None else Path(study) / "figures"
