"""Shared plumbing of the paper-figure scripts (``analysis/<experiment>.py``).

Every figure script reads one study's ``runs.parquet`` with polars (``read_runs``), draws with
seaborn from ``df.to_pandas()`` (95 % confidence intervals over replicates: ``CI``), marks the
paper's number with ``reference``, writes PNG + SVG with ``save`` and returns a ``Finding``: what
the paper reported, what we measured and whether the shape agrees, computed from the data.
``report.py`` collects the findings; ``main`` gives each script the same command line:

    python analysis/<experiment>.py RESULTS_DIR [--out DIR]

RESULTS_DIR is a study directory (``results/overhead``) or the results root (``results``, then
the script's own study under it). Figures go to ``RESULTS_DIR/figures`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import polars as pl  # noqa: E402

CI = ("ci", 95)  # seaborn errorbar: bootstrap 95 % CI of the mean over replicates
GROUPS = ("machine", "cells", "workload", "faults", "policy", "sim", "experiment")
RUNS = "runs.parquet"


@dataclass(slots=True)
class Finding:
    """One line of the report: the paper's number, ours, and whether the shape agrees."""

    figure: str
    title: str
    paper: str
    measured: str
    agrees: bool | None  # None: the paper gives nothing to compare with
    criterion: str  # how ``agrees`` was decided
    paths: list[Path] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return {True: "agrees", False: "differs", None: "n/a"}[self.agrees]


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


def config_columns(df: pl.DataFrame) -> list[str]:
    """Columns that describe a run's configuration: group choices and dotted overrides."""
    return [c for c in df.columns if c in GROUPS or "." in c]


def variant_columns(df: pl.DataFrame) -> list[str]:
    """Configuration columns that differ between runs (what the study swept)."""
    return [c for c in config_columns(df) if df[c].n_unique() > 1]


def t95(n: int) -> float:
    """Two-sided 95 % Student-t quantile for n samples (n - 1 degrees of freedom)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
             9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}
    dof = n - 1
    if dof < 1:
        return math.nan
    if dof >= 120:
        return 1.96
    return table[max(k for k in table if k <= dof)]  # conservative between table rows


def mean_ci(df: pl.DataFrame, by: list[str], metrics: list[str]) -> pl.DataFrame:
    """Long table: ``by`` columns, metric, n, mean, ci95 (t-interval half-width)."""
    parts = []
    for m in metrics:
        g = (df.group_by(by, maintain_order=True)
             .agg(pl.col(m).cast(pl.Float64).drop_nans().drop_nulls().alias("_v"))
             .with_columns(pl.lit(m).alias("metric"),
                           pl.col("_v").list.len().alias("n"),
                           pl.col("_v").list.mean().alias("mean"),
                           pl.col("_v").list.std().alias("_sd")))
        parts.append(g.with_columns(
            (pl.col("_sd") / pl.col("n").cast(pl.Float64).sqrt()
             * pl.col("n").map_elements(t95, return_dtype=pl.Float64)).alias("ci95"))
            .drop("_v", "_sd"))
    return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()


def subplots(n: int = 1, width: float = 5.0, height: float = 4.0):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), layout="constrained",
                             squeeze=False)
    return fig, list(axes[0])


def reference(ax, value: float, label: str, *, axis: str = "y", color: str = "crimson",
              style: str = "--") -> None:
    """The paper's number as a labelled line (legend entry)."""
    line = ax.axhline if axis == "y" else ax.axvline
    line(value, color=color, linestyle=style, linewidth=1.2, label=label)
    old = ax.get_legend()
    ax.legend(fontsize=8, title=old.get_title().get_text() if old else None, title_fontsize=8)


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
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def fmt(x: float, spec: str = ".3g") -> str:
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
          f"{finding.verdict} ({finding.criterion})")
    return finding


def out_dir_for(study: Path, out: Path | None) -> Path:
    return Path(out) if out is not None else Path(study) / "figures"


def to_pandas(df: pl.DataFrame) -> Any:
    return df.to_pandas()
