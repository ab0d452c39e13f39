"""Virtualization overhead (PAPER.md, Results: virtualization overhead; conf/experiment/overhead).

Each workload alone in one VM: Cellular Disco's VM run time normalised to the native SMP OS on
the same machine and seed, on 1 CPU and on 32 CPUs. Paper: typically within 10 %; worst 9 % on
1 CPU and 20 % on 32 CPUs.

    python analysis/overhead.py results/overhead
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402

STUDY = "overhead"
TYPE = "workload.vms.0.workload"
MACHINES = {"solo_1cpu": "1 CPU", "solo_32cpu": "32 CPUs"}
PAPER_WORST = {"1 CPU": 1.09, "32 CPUs": 1.20}
PAPER_TYPICAL = 1.10


def ratios(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (machine, workload type, replicate): run time on cellular_disco / smp_os."""
    keys = ["workload", TYPE, "replicate"]
    runtime = pl.col("vm_runtime_mean_s")
    cd = df.filter(pl.col("policy") == "cellular_disco").select(*keys, runtime.alias("cd"))
    smp = df.filter(pl.col("policy") == "smp_os").select(*keys, runtime.alias("smp"))
    return (cd.join(smp, on=keys)
            .with_columns((pl.col("cd") / pl.col("smp")).alias("normalised"),
                          pl.col("workload").replace_strict(MACHINES, default=pl.col("workload"))
                          .alias("machine_cpus"))
            .filter(pl.col("normalised").is_finite()))


def make(study: Path, out: Path | None = None) -> F.Finding:
    r = ratios(F.read_runs(study))
    fig, (ax,) = F.subplots(1, width=7)
    if r.height:
        sns.barplot(data=r.to_pandas(), x=TYPE, y="normalised", hue="machine_cpus",
                    errorbar=F.CI, capsize=0.1, ax=ax)
    ax.axhline(1.0, color="black", linewidth=0.8)
    F.reference(ax, PAPER_TYPICAL, "paper: typical (1.10)", color="grey", style=":")
    F.reference(ax, PAPER_WORST["1 CPU"], "paper: worst on 1 CPU (1.09)", color="tab:blue")
    F.reference(ax, PAPER_WORST["32 CPUs"], "paper: worst on 32 CPUs (1.20)", color="tab:orange")
    ax.set(xlabel="workload (one VM alone)",
           ylabel="VM run time, Cellular Disco / SMP OS (ratio)",
           title="Virtualization overhead (mean, 95 % CI over replicates)")
    ax.set_ylim(bottom=0.9)
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)

    means = r.group_by("machine_cpus", TYPE).agg(pl.col("normalised").mean())
    worst = {m: means.filter(pl.col("machine_cpus") == m)["normalised"].max()
             for m in MACHINES.values()}
    typical = means["normalised"].median() if means.height else float("nan")
    w1, w32 = worst["1 CPU"], worst["32 CPUs"]
    agrees = None if w1 is None or w32 is None else bool(
        1.0 <= w1 <= 1.15 and 1.0 <= w32 <= 1.30 and w32 >= w1)
    return F.Finding(
        figure=STUDY, title="Virtualization overhead", paths=paths,
        paper="typically < 10 %; worst 9 % on 1 CPU, 20 % on 32 CPUs",
        measured=(f"worst {F.fmt((w1 or float('nan')) - 1, '.1%')} on 1 CPU, "
                  f"{F.fmt((w32 or float('nan')) - 1, '.1%')} on 32 CPUs; "
                  f"median {F.fmt(typical - 1, '.1%')}"),
        agrees=agrees,
        criterion="worst ratio in [1, 1.15] on 1 CPU, in [1, 1.30] on 32 CPUs, 32 CPUs >= 1 CPU")


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
