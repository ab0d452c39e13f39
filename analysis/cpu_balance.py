"""CPU balancing (PAPER.md, Results: CPU balancing; conf/experiment/cpu_balance).

The shifting mix (conf/workload/mix_shifting.yaml: load moves from cells 0-3 to cells 4-7) under
every balancer setting (both, idle only, periodic only, none), with gang scheduling on and off,
the periodic balancer's period swept. Panels: CPU utilisation per balancer setting, CPU wasted
spinning with gang scheduling on/off, VM run time against the period. The paper gives no
numbers; the effect must be visible.

    python analysis/cpu_balance.py results/cpu_balance
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402

STUDY = "cpu_balance"
NAMES = {"cellular_disco": "both", "idle_only": "idle only", "periodic_only": "periodic only",
         "no_balancers": "none"}
PERIOD, GANG = "policy.periodic_period_ms", "policy.gang"


def prepare(df: pl.DataFrame) -> pl.DataFrame:
    if GANG not in df.columns:
        df = df.with_columns(pl.lit(True).alias(GANG))
    if PERIOD not in df.columns:
        df = df.with_columns(pl.lit(100.0).alias(PERIOD))
    return df.with_columns(
        pl.col("policy").replace_strict(NAMES, default=pl.col("policy")).alias("balancers"),
        pl.when(pl.col(GANG)).then(pl.lit("gang on")).otherwise(pl.lit("gang off"))
        .alias("gang"),
        (pl.col("cpu_utilization") * 100).alias("utilization_pct"),
        (pl.col("spin_waste_fraction") * 100).alias("spin_waste_pct"))


def make(study: Path, out: Path | None = None) -> F.Finding:
    df = prepare(F.read_runs(study))
    order = [n for n in NAMES.values() if n in set(df["balancers"].to_list())] if df.height else []
    fig, (a, b, c) = F.subplots(3, width=4.8)
    if df.height:
        pdf = df.to_pandas()
        sns.barplot(data=pdf, x="balancers", y="utilization_pct", hue="gang", order=order,
                    errorbar=F.CI, capsize=0.1, ax=a)
        sns.barplot(data=pdf, x="balancers", y="spin_waste_pct", hue="gang", order=order,
                    errorbar=F.CI, capsize=0.1, ax=b)
        sns.lineplot(data=df.filter(pl.col(GANG)).to_pandas(), x=PERIOD, y="vm_runtime_mean_s",
                     hue="balancers", hue_order=order, marker="o", errorbar=F.CI, ax=c)
    a.set(xlabel="balancers", ylabel="CPU utilisation (%)", title="utilisation")
    b.set(xlabel="balancers", ylabel="CPU time wasted spinning (%)", title="gang scheduling")
    c.set(xlabel="periodic balancer period (ms)", ylabel="mean VM run time (s)",
          title="period (gang on)")
    for ax in (a, b):
        ax.tick_params(axis="x", rotation=20)
    fig.suptitle("CPU balancing under a shifting load (mean, 95 % CI)")
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)

    def mean(col: str, **where) -> float | None:
        x = df
        for k, v in where.items():
            x = x.filter(pl.col(k) == v)
        return x[col].mean() if x.height else None

    both, none = mean("utilization_pct", balancers="both"), mean("utilization_pct",
                                                                  balancers="none")
    on, off = mean("spin_waste_pct", gang="gang on"), mean("spin_waste_pct", gang="gang off")
    checks = [None if both is None or none is None else both > none,
              None if on is None or off is None else off > on]
    return F.Finding(
        figure=STUDY, title="CPU balancing", paths=paths,
        paper="no numbers; the balancers' effect must be visible",
        measured=(f"utilisation {F.fmt(both, '.1f')} % with both balancers vs "
                  f"{F.fmt(none, '.1f')} % with none; spinning {F.fmt(off, '.2f')} % of CPU "
                  f"with gang off vs {F.fmt(on, '.2f')} % with gang on"),
        agrees=None if None in checks else all(checks),
        criterion="both balancers beat none on utilisation; gang off spins more")


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
