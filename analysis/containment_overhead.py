"""Cost of fault containment (PAPER.md, Results: fault-containment overhead).

Each workload's multi-VM mix on Cellular Disco with 8 cells, VM run time normalised to the same
mix and seed with 1 cell (conf/experiment/containment_overhead). Paper: "practically the same".

    python analysis/containment_overhead.py results/containment_overhead
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402

STUDY = "containment_overhead"
TOLERANCE = 0.05  # "practically the same": within 5 %


def ratios(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (workload, replicate): mean VM run time with 8 cells / with 1 cell."""
    keys = ["workload", "replicate"]
    rt = pl.col("vm_runtime_mean_s")
    one = df.filter(pl.col("cells") == "cells_1").select(*keys, rt.alias("one"))
    eight = df.filter(pl.col("cells") == "cells_8").select(*keys, rt.alias("eight"))
    return (eight.join(one, on=keys)
            .with_columns((pl.col("eight") / pl.col("one")).alias("normalised"))
            .filter(pl.col("normalised").is_finite()))


def make(study: Path, out: Path | None = None) -> F.Finding:
    r = ratios(F.read_runs(study))
    fig, (ax,) = F.subplots(1, width=6)
    if r.height:
        sns.barplot(data=r.to_pandas(), x="workload", y="normalised", errorbar=F.CI,
                    capsize=0.1, ax=ax)
    F.reference(ax, 1.0, "paper: practically the same (1.0)")
    ax.set(xlabel="workload mix", ylabel="VM run time, 8 cells / 1 cell (ratio)",
           title="Fault-containment overhead (mean, 95 % CI)")
    ax.set_ylim(0.8, 1.2)
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)
    per = r.group_by("workload", maintain_order=True).agg(pl.col("normalised").mean())
    means = per["normalised"]
    worst = (means - 1).abs().max() if means.len() else None
    return F.Finding(
        figure=STUDY, title="Fault-containment overhead", paths=paths,
        paper='8 cells vs 1 cell: "practically the same"',
        measured=("8-cell / 1-cell run time " + ", ".join(
            f"{w} {F.fmt(v, '.3f')}" for w, v in per.iter_rows())
            if means.len() else "no comparable runs"),
        agrees=None if worst is None else bool(worst <= TOLERANCE),
        criterion=f"every workload's mean ratio within {TOLERANCE:.0%} of 1")


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
