"""CPU balancing (PAPER.md, Results: CPU balancing; conf/experiment/cpu_balance).

Two loads: the shifting mix (conf/workload/mix_shifting.yaml: load moves from cells 0-3 to cells
4-7) under every balancer setting (both, idle only, periodic only, none), the periodic
balancer's period swept; and Raytrace overcommitted two to one (raytrace_overcommit: 64 VCPUs
of spin-synchronised VMs on 32 CPUs) with gang scheduling on and off (policy gang_off). Panels:
mean VM run time per balancer setting, run time against the period, Raytrace run time and CPU
spun away with gang scheduling on and off. The paper gives no numbers: each mechanism must
visibly shorten run time where it should act.

    python analysis/cpu_balance.py results/cpu_balance
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402
import verdicts as V  # noqa: E402

STUDY = "cpu_balance"
NAMES = {"cellular_disco": "both", "idle_only": "idle only", "periodic_only": "periodic only",
         "no_balancers": "none", "gang_off": "both, gang off"}
PERIOD = "policy.periodic_period_ms"
SHIFTING, RAYTRACE = "mix_shifting", "raytrace_overcommit"
DEFAULT_PERIOD = 100.0  # PolicyConfig.periodic_period_ms [A]
RT = "vm_runtime_all_s"  # mean VM run time, an unfinished VM counted to the end of the run
SOURCE = "[S] PAPER.md CPU management (the paper gives no numbers: the effect must be visible)"


def prepare(df: pl.DataFrame) -> pl.DataFrame:
    if PERIOD not in df.columns:
        df = df.with_columns(pl.lit(DEFAULT_PERIOD).alias(PERIOD))
    if "workload" not in df.columns:
        df = df.with_columns(pl.lit(SHIFTING).alias("workload"))
    return df.with_columns(
        pl.col(PERIOD).cast(pl.Float64),
        pl.col("policy").replace_strict(NAMES, default=pl.col("policy")).alias("balancers"),
        pl.when(pl.col("policy") == "gang_off").then(pl.lit("gang off"))
        .otherwise(pl.lit("gang on")).alias("gang"),
        (pl.col("spin_waste_fraction") * 100).alias("spin_waste_pct"))


def make(study: Path, out: Path | None = None) -> F.Finding:
    runs = F.read_runs(study)
    df = prepare(F.with_runtime_all(study, runs))
    shifting = df.filter(pl.col("workload") == SHIFTING)
    at_default = shifting.filter((pl.col(PERIOD) == DEFAULT_PERIOD)
                                 & (pl.col("policy") != "gang_off"))
    raytrace = df.filter((pl.col("workload") == RAYTRACE) & (pl.col(PERIOD) == DEFAULT_PERIOD))
    order = [n for p, n in NAMES.items() if p != "gang_off"
             and n in set(at_default["balancers"].to_list())]
    fig, (a, b, c, d) = F.subplots(4, width=4.2)
    if at_default.height:
        sns.barplot(data=at_default.to_pandas(), x="balancers", y=RT,
                    order=order, errorbar=F.CI, capsize=0.1, ax=a)
        F.mark_missing(a, at_default, "balancers", RT, order)
    on_shift = shifting.filter(pl.col("policy") != "gang_off")
    if on_shift.height:
        sns.lineplot(data=on_shift.to_pandas(), x=PERIOD, y=RT,
                     hue="balancers", hue_order=order, marker="o", errorbar=F.CI, ax=b)
        F.value_ticks(b, on_shift[PERIOD].unique().to_list())
    gang_order = [g for g in ("gang on", "gang off") if g in set(raytrace["gang"].to_list())]
    if raytrace.height:
        sns.barplot(data=raytrace.to_pandas(), x="gang", y=RT,
                    order=gang_order, errorbar=F.CI, capsize=0.1, ax=c)
        sns.barplot(data=raytrace.to_pandas(), x="gang", y="spin_waste_pct",
                    order=gang_order, errorbar=F.CI, capsize=0.1, ax=d)
    a.set(xlabel="balancers", ylabel="mean VM run time (s)",
          title=f"shifting load, period {DEFAULT_PERIOD:g} ms")
    b.set(xlabel="periodic balancer period (ms)", ylabel="mean VM run time (s)",
          title="shifting load: period")
    c.set(xlabel="gang scheduling", ylabel="mean VM run time (s)", title="Raytrace, 2x overcommit")
    d.set(xlabel="gang scheduling", ylabel="CPU time spent spinning (%)",
          title="Raytrace: spinning")
    a.tick_params(axis="x", rotation=20)
    F.legend_outside(fig, (a, b, c, d), title="balancers")
    fig.suptitle("CPU balancing and gang scheduling (mean, 95 % t interval)")
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)

    rt = RT
    checks = [
        V.lower_is_better(at_default, "policy", "no_balancers", "cellular_disco", rt,
                          claim="mean VM run time with both balancers below none (shifting "
                                "load; 95 % t interval of the paired difference below 0)",
                          source=SOURCE),
        V.lower_is_better(at_default, "policy", "no_balancers", "idle_only", rt,
                          claim="mean VM run time with the idle balancer alone below none "
                                "(shifting load; interval below 0)", source=SOURCE),
        V.lower_is_better(raytrace, "policy", "gang_off", "cellular_disco", rt,
                          claim="mean Raytrace run time with gang scheduling below without "
                                "(2x overcommit; interval below 0)",
                          source="[S] spin-synchronised VMs need their VCPUs run together"),
    ]

    def mean(frame: pl.DataFrame, policy: str, col: str = rt) -> float | None:
        x = frame.filter(pl.col("policy") == policy)[col]
        return x.mean() if x.len() else None

    return F.Finding(
        figure=STUDY, title="CPU balancing", paths=paths, checks=checks,
        paper="no numbers; the balancers' and gang scheduling's effect must be visible",
        measured=(f"shifting load, mean VM run time: both "
                  f"{F.fmt(mean(at_default, 'cellular_disco'))} s, idle only "
                  f"{F.fmt(mean(at_default, 'idle_only'))} s, none "
                  f"{F.fmt(mean(at_default, 'no_balancers'))} s; Raytrace 2x: gang on "
                  f"{F.fmt(mean(raytrace, 'cellular_disco'))} s vs off "
                  f"{F.fmt(mean(raytrace, 'gang_off'))} s"))


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
