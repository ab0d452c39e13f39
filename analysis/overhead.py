"""Virtualization overhead (PAPER.md, Results: virtualization overhead; conf/experiment/overhead).

Each workload alone in one VM: Cellular Disco's VM run time normalised to the native SMP OS on
the same machine and seed, on 1, 8 and 32 CPUs. Paper: typically within 10 % [P]; worst 9 % on
1 CPU and 20 % on 32 CPUs [R]; the paper measured all three sizes [B09].

The overhead is a formula of the model (disco/policies/cellular_disco.py): kernel_fraction x
(trap_cost + vcpu_scaling_cost x log2 VCPUs), and its two constants were set to reproduce the
9 % and the 20 % (disco/config.py), so those checks are "calibrated"; that 8 CPUs falls between
them is the formula's log2 interpolation ("analytic").

    python analysis/overhead.py results/overhead
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402
import verdicts as V  # noqa: E402

STUDY = "overhead"
TYPE = "workload.vms.0.workload"
MACHINES = {"solo_1cpu": "1 CPU", "solo_8cpu": "8 CPUs", "solo_32cpu": "32 CPUs"}
PAPER_WORST = {"1 CPU": 1.09, "32 CPUs": 1.20}
TOLERANCE = {"1 CPU": 0.03, "32 CPUs": 0.05}  # points of overhead either side of the paper's
PAPER_TYPICAL = 1.10
RT = "vm_runtime_all_s"


def ratios(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (machine, workload type, replicate): run time on cellular_disco / smp_os."""
    keys = ["workload", TYPE, "replicate"]
    runtime = pl.col(RT if RT in df.columns else "vm_runtime_mean_s")
    cd = df.filter(pl.col("policy") == "cellular_disco").select(*keys, runtime.alias("cd"))
    smp = df.filter(pl.col("policy") == "smp_os").select(*keys, runtime.alias("smp"))
    return (cd.join(smp, on=keys)
            .with_columns((pl.col("cd") / pl.col("smp")).alias("normalised"),
                          pl.col("workload").replace_strict(MACHINES, default=pl.col("workload"))
                          .alias("machine"))
            .filter(pl.col("normalised").is_finite()))


def worst(r: pl.DataFrame, machine: str) -> tuple[V.Interval, str | None]:
    """The interval of the worst workload type's ratio on ``machine`` (by mean), and the type."""
    best: tuple[V.Interval, str | None] = (V.t_interval([]), None)
    for (kind,), sub in r.filter(pl.col("machine") == machine).group_by(TYPE):
        iv = V.t_interval(sub["normalised"])
        if best[1] is None or iv.mean > best[0].mean:
            best = (iv, kind)
    return best


def make(study: Path, out: Path | None = None) -> F.Finding:
    r = ratios(F.with_runtime_all(study, F.read_runs(study)))
    machines = [m for m in MACHINES.values() if m in set(r["machine"].to_list())]
    types = sorted(r[TYPE].unique().to_list()) if r.height else []
    fig, (ax,) = F.subplots(1, width=7.5)
    if r.height:
        sns.pointplot(data=r.rename({"machine": "machine size"}).to_pandas(), x=TYPE,
                      y="normalised", hue="machine size", order=types, hue_order=machines,
                      errorbar=F.CI, dodge=0.4, capsize=0.1, linestyle="none", ax=ax)
    ax.axhline(1.0, color="black", linewidth=0.8)
    F.reference(ax, PAPER_TYPICAL, "paper: typical (1.10)", color="grey", style=":")
    F.reference(ax, PAPER_WORST["1 CPU"], "paper: worst on 1 CPU (1.09)", color="tab:blue")
    F.reference(ax, PAPER_WORST["32 CPUs"], "paper: worst on 32 CPUs (1.20)", color="tab:green")
    ax.set(xlabel="workload (one VM alone)",
           ylabel="VM run time, Cellular Disco / SMP OS (ratio)",
           title="Virtualization overhead (mean, 95 % t interval)")
    F.legend_outside(fig, [ax], title="machine size", ncols=3)
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)

    w = {m: worst(r, m) for m in MACHINES.values()}
    checks = []
    for m in ("1 CPU", "32 CPUs"):
        iv, kind = w[m]
        lo, hi = PAPER_WORST[m] - TOLERANCE[m], PAPER_WORST[m] + TOLERANCE[m]
        checks.append(V.check(
            f"worst workload's overhead on {m} within {TOLERANCE[m]:.0%} points of the paper's "
            f"{PAPER_WORST[m] - 1:.0%} (mean ratio in [{lo:.2f}, {hi:.2f}])", "calibrated",
            "[R] worst 9 % on 1 CPU, 20 % on 32 CPUs; trap_cost and vcpu_scaling_cost were "
            "set to give them", f"{kind}: {iv.text('.3f')}", V.mean_within(iv, lo, hi), iv.n))
    (w1, _), (w8, k8), (w32, _) = w["1 CPU"], w["8 CPUs"], w["32 CPUs"]
    between = (None if w8.n == 0 or w1.n == 0 or w32.n == 0
               else w1.mean <= w8.mean <= w32.mean)
    checks.append(V.check(
        "the worst overhead on 8 CPUs lies between 1 CPU's and 32 CPUs' (mean ratios)",
        "analytic", "[B09] measured at 1, 8 and 32 CPUs; the model grows it with log2 VCPUs",
        f"{k8}: {w8.text('.3f')} vs {w1.mean:.3f} and {w32.mean:.3f}", between, w8.n))
    means = r.group_by("machine", TYPE).agg(pl.col("normalised").mean())["normalised"]
    med = means.median() if means.len() else None
    checks.append(V.check(
        "typical overhead within 10 % (median ratio over workloads and machine sizes <= 1.10)",
        "calibrated", "[P] typically within 10 %; the constants were set on the worst cases",
        f"median {F.fmt(med, '.3f')} over {means.len()} workload x machine means",
        None if med is None else med <= PAPER_TYPICAL))
    return F.Finding(
        figure=STUDY, title="Virtualization overhead", paths=paths, checks=checks,
        paper="typically < 10 %; worst 9 % on 1 CPU, 20 % on 32 CPUs",
        measured="worst " + ", ".join(
            f"{F.fmt(w[m][0].mean - 1 if w[m][0].n else None, '.1%')} on {m}" for m in machines),
        notes=["Calibrated: the model's overhead is kernel_fraction x (trap_cost + "
               "vcpu_scaling_cost x log2 VCPUs) with both constants chosen to give the paper's "
               "worst cases, so agreement here is by construction, not evidence."])


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
