"""Cost of fault containment (PAPER.md, Results: fault-containment overhead).

Each workload's multi-VM mix, and the default mix (which overcommits the CPUs at times), on
Cellular Disco with 8 cells, VM run time normalised to the same mix and seed with 1 cell
(conf/experiment/containment_overhead). A workload alone does not overcommit the machine, so
cells hardly matter to it; the overcommitted mix is where the balancers must work across cell
boundaries. Paper: "practically the same" [S]; "not higher than 2 %" [B09].

    python analysis/containment_overhead.py results/containment_overhead
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402
import verdicts as V  # noqa: E402

STUDY = "containment_overhead"
BOUND = 0.02  # "not higher than 2 %" [B09]
OVERCOMMITTED = ("mix_default",)
RT = "vm_runtime_all_s"
SOURCE = '[B09] "not higher than 2 %"; [S] "practically the same"'


def ratios(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (workload, replicate): mean VM run time with 8 cells / with 1 cell."""
    keys = ["workload", "replicate"]
    rt = pl.col(RT if RT in df.columns else "vm_runtime_mean_s")
    one = df.filter(pl.col("cells") == "cells_1").select(*keys, rt.alias("one"))
    eight = df.filter(pl.col("cells") == "cells_8").select(*keys, rt.alias("eight"))
    return (eight.join(one, on=keys)
            .with_columns((pl.col("eight") / pl.col("one")).alias("ratio"),
                          pl.when(pl.col("workload").is_in(OVERCOMMITTED))
                          .then(pl.lit("overcommitted mix")).otherwise(pl.lit("alone"))
                          .alias("load"))
            .filter(pl.col("ratio").is_finite()))


def make(study: Path, out: Path | None = None) -> F.Finding:
    r = ratios(F.with_runtime_all(study, F.read_runs(study)))
    order = list(dict.fromkeys(r["workload"].to_list()))
    fig, (ax,) = F.subplots(1, width=7)
    if r.height:
        sns.pointplot(data=r.to_pandas(), x="workload", y="ratio", order=order,
                      hue="load", hue_order=["alone", "overcommitted mix"], errorbar=F.CI,
                      capsize=0.1, linestyle="none", ax=ax)
    ax.axhline(1.0, color="black", linewidth=0.8)
    F.reference(ax, 1 + BOUND, "paper: not higher than 2 % (1.02)")
    ax.set(xlabel="workload mix", ylabel="VM run time, 8 cells / 1 cell (ratio)",
           title="Fault-containment overhead (mean, 95 % t interval)")
    F.legend_outside(fig, [ax], title="load")
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)
    alone = r.filter(pl.col("load") == "alone")
    over = r.filter(pl.col("load") != "alone")
    claim = ("8 cells cost at most 2 % more VM run time than 1 cell on {} "
             "(mean ratio per workload, paired by seed)")
    checks = [V.ratio_within(alone, "workload", BOUND, source=SOURCE,
                             claim=claim.format("each workload alone")),
              V.ratio_within(over, "workload", BOUND, source=SOURCE,
                             claim=claim.format("a mix that overcommits the CPUs"))]
    per = r.group_by("workload", maintain_order=True).agg(pl.col("ratio").mean())
    return F.Finding(
        figure=STUDY, title="Fault-containment overhead", paths=paths, checks=checks,
        paper='8 cells vs 1 cell: "not higher than 2 %"',
        measured=("8-cell / 1-cell run time " + ", ".join(
            f"{w} {F.fmt(v, '.3f')}" for w, v in per.iter_rows())
            if per.height else "no comparable runs"))


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
