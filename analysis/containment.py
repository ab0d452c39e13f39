"""Fault containment (PAPER.md, Results: fault containment; conf/experiment/containment).

A fault-injection campaign (random node, router, link, firmware and guest-OS faults) on Cellular
Disco with 8 cells, Disco with one cell, the SMP OS and fixed hardware partitions. Panels: VMs
lost per effective fault (faults that hit a live part of the machine), share of faults
contained (only the VMs that depended on the failed part were lost), VMs completed.
Paper: 1000 injections, 100 % contained.

    python analysis/containment.py results/containment
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402

STUDY = "containment"
ORDER = ["cellular_disco", "fixed_partition", "disco_one_cell", "smp_os"]


def per_run(df: pl.DataFrame) -> pl.DataFrame:
    """Runs with at least one effective fault, with VMs lost per fault and share contained."""
    eff = pl.col("faults_injected") - pl.col("faults_ignored")
    return (df.filter(eff > 0)
            .with_columns(eff.alias("faults_effective"),
                          (pl.col("vms_lost") / eff).alias("vms_lost_per_fault"),
                          (pl.col("faults_contained") / pl.col("faults_injected") * 100)
                          .alias("contained_pct")))


def make(study: Path, out: Path | None = None) -> F.Finding:
    df = F.read_runs(study)
    r = per_run(df)
    order = [p for p in ORDER if p in set(df["policy"].to_list())] if df.height else ORDER
    fig, (a, b, c) = F.subplots(3, width=4.5)
    kw = dict(x="policy", order=order, errorbar=F.CI, capsize=0.1)
    if r.height:
        sns.barplot(data=r.to_pandas(), y="vms_lost_per_fault", ax=a, **kw)
        sns.barplot(data=r.to_pandas(), y="contained_pct", ax=b, **kw)
    if df.height:
        sns.barplot(data=df.to_pandas(), y="vms_completed", ax=c, **kw)
    F.reference(b, 100.0, "paper: 100 % contained")
    a.set(ylabel="VMs lost per effective fault", title="VMs lost per fault")
    b.set(ylabel="faults contained (%)", title="containment", ylim=(0, 110))
    c.set(ylabel="VMs completed per run", title="throughput under faults")
    for ax in (a, b, c):
        ax.set_xlabel("policy")
        ax.tick_params(axis="x", rotation=25)
    n_faults = int(r["faults_injected"].sum()) if r.height else 0
    fig.suptitle(f"Fault-injection campaign: {n_faults} faults over {r.height} runs "
                 "(mean, 95 % CI over runs)")
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)

    def total(policy: str, col: str) -> float | None:
        x = r.filter(pl.col("policy") == policy)
        return float(x[col].sum()) if x.height else None

    cd_f = total("cellular_disco", "faults_injected")
    cd_e, one_e = total("cellular_disco", "faults_effective"), total("disco_one_cell",
                                                                     "faults_effective")
    cd_c = total("cellular_disco", "faults_contained")
    cd_lost = (total("cellular_disco", "vms_lost") or 0) / cd_e if cd_e else None
    one_lost = (total("disco_one_cell", "vms_lost") or 0) / one_e if one_e else None
    share = cd_c / cd_f if cd_f else None
    agrees = None if share is None or one_lost is None else bool(
        share == 1.0 and cd_lost < one_lost)
    return F.Finding(
        figure=STUDY, title="Fault containment", paths=paths,
        paper="1000 injections, 100 % contained",
        measured=(f"Cellular Disco 8 cells: {F.fmt(share, '.0%')} of {F.fmt(cd_f, '.0f')} "
                  f"faults contained, {F.fmt(cd_lost, '.2f')} VMs lost per effective fault vs "
                  f"{F.fmt(one_lost, '.2f')} with one cell"),
        agrees=agrees,
        criterion="100 % contained on 8 cells and fewer VMs lost per fault than one cell")


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
