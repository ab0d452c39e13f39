"""Cellular Disco vs hardware partitioning (PAPER.md, Results: vs hardware partitioning).

A load that moves from one cell to another (conf/workload/mix_shifting_2.yaml) on Cellular
Disco and on fixed partitions of 16, 8 and 4 CPUs (cells_2/4/8; conf/experiment/vs_partitioning).
Panels: CPU utilisation, VMs completed, mean VM run time (completed VMs), all without faults,
and VMs completed under the fault campaign (``faults=campaign``: throughput under a fault rate).
Paper: Cellular Disco does "significantly better".

    python analysis/vs_partitioning.py results/vs_partitioning
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402

STUDY = "vs_partitioning"
CPUS = {"cells_2": 16, "cells_4": 8, "cells_8": 4, "cells_16": 2}  # on the 32-CPU machine


def with_size(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        pl.col("cells").replace_strict(CPUS, default=None, return_dtype=pl.Int64)
        .alias("cpus_per_cell"),
        (pl.col("cpu_utilization") * 100).alias("utilization_pct"))


def make(study: Path, out: Path | None = None) -> F.Finding:
    runs = with_size(F.read_runs(study))
    if "faults" not in runs.columns:
        runs = runs.with_columns(pl.lit("none").alias("faults"))
    df = runs.filter(pl.col("faults") == "none")
    faulty = runs.filter(pl.col("faults") != "none")
    fig, axes = F.subplots(4, width=4.2)
    panels = [(df, "utilization_pct", "CPU utilisation (%)", "utilisation"),
              (df, "vms_completed", "VMs completed per run", "throughput"),
              (df, "vm_runtime_mean_s", "mean VM run time (s)", "run time (completed VMs)"),
              (faulty, "vms_completed", "VMs completed per run", "throughput under faults")]
    for ax, (data, y, ylabel, title) in zip(axes, panels, strict=True):
        if data.height:
            sns.barplot(data=data.to_pandas(), x="cpus_per_cell", y=y, hue="policy",
                        hue_order=["cellular_disco", "fixed_partition"], errorbar=F.CI,
                        capsize=0.1, ax=ax)
        ax.set(xlabel="CPUs per cell / partition", ylabel=ylabel, title=title)
    fig.suptitle("Cellular Disco vs fixed hardware partitions, shifting load (mean, 95 % CI)")
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)

    m = df.group_by("cpus_per_cell", "policy").agg(pl.col("utilization_pct").mean())
    cd = dict(m.filter(pl.col("policy") == "cellular_disco").select("cpus_per_cell",
                                                                    "utilization_pct").iter_rows())
    fp = dict(m.filter(pl.col("policy") == "fixed_partition").select("cpus_per_cell",
                                                                     "utilization_pct").iter_rows())
    sizes = sorted(set(cd) & set(fp), reverse=True)
    parts = [f"{s} CPUs: {F.fmt(cd[s], '.0f')} % vs {F.fmt(fp[s], '.0f')} %" for s in sizes]
    if faulty.height:
        done = faulty.group_by("policy").agg(pl.col("vms_completed").mean())
        d = dict(done.iter_rows())
        parts.append(f"under faults {F.fmt(d.get('cellular_disco'), '.1f')} vs "
                     f"{F.fmt(d.get('fixed_partition'), '.1f')} VMs completed per run")
    agrees = bool(all(cd[s] > fp[s] for s in sizes)) if sizes else None
    return F.Finding(
        figure=STUDY, title="vs hardware partitioning", paths=paths,
        paper='Cellular Disco "significantly better" than fixed partitions',
        measured="utilisation Cellular Disco vs fixed partitions: " + "; ".join(parts),
        agrees=agrees, criterion="Cellular Disco's utilisation above every partition size's")


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
