"""Fault containment (PAPER.md, Results: fault containment; conf/experiment/containment).

A fault-injection campaign (random node, router, link, firmware and guest-OS faults) on Cellular
Disco with 8 cells, Disco with one cell, the SMP OS and fixed hardware partitions, on the same
fault schedule: a replicate's seed fixes its fault times and places under every policy (common
random numbers), so each hardware fault is compared with itself. Panels: VMs lost per hardware
fault that hit a live part of the machine, the share of the running VMs that fault killed
(against 1 / cells: a VM that stays in its cell dies with it and no other), VMs completed.

"100 % of faults contained" is not a check here: it re-applies the rule that chose the victims,
so it holds for every policy by construction.

    python analysis/containment.py results/containment
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402
import verdicts as V  # noqa: E402

STUDY = "containment"
ORDER = ["cellular_disco", "fixed_partition", "disco_one_cell", "smp_os"]
NAMES = {"cellular_disco": "Cellular Disco", "fixed_partition": "fixed partitions",
         "disco_one_cell": "Disco, one cell", "smp_os": "SMP OS"}


def vm_ends(vms: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """``vms`` with ``end_s``: when each VM copy left the system. A finished VM at its finish;
    a lost one when its restarted copy (``<name>+r``) arrived, i.e. when its fault's recovery
    ended; anything else (still running, or lost with no restart) at the end of the run."""
    succ = (vms.filter(pl.col("name").str.ends_with("+r"))
            .select("key", pl.col("name").str.strip_suffix("+r").alias("name"),
                    pl.col("arrival_s").alias("_next")))
    return (vms.join(runs.select("key", "sim_time_s"), on="key", how="left")
            .join(succ, on=["key", "name"], how="left")
            .with_columns(pl.when(pl.col("status") == "done").then(pl.col("finish_s"))
                          .when((pl.col("status") == "lost") & pl.col("_next").is_not_null())
                          .then(pl.col("_next")).otherwise(pl.col("sim_time_s")).alias("end_s"))
            .drop("_next", "sim_time_s"))


def lost_shares(faults: pl.DataFrame, vms: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """One row per hardware fault that hit a live part of the machine and finished recovering,
    with ``running`` (VMs in the system at the fault) and ``share`` = VMs lost / running."""
    hw = faults.filter((pl.col("type") != "software") & ~pl.col("ignored"))
    if "censored" in hw.columns:  # still recovering at the end: its losses are pending
        hw = hw.filter(~pl.col("censored"))
    ends = vm_ends(vms, runs).select("key", "arrival_s", "end_s")
    alive = (hw.select("key", "time_s").unique().join(ends, on="key", how="inner")
             .filter((pl.col("arrival_s") <= pl.col("time_s"))
                     & (pl.col("time_s") < pl.col("end_s")))
             .group_by("key", "time_s").len("running"))
    return (hw.join(alive, on=["key", "time_s"], how="left")
            .with_columns(pl.col("running").fill_null(0))
            .filter(pl.col("running") > 0)
            .with_columns((pl.col("vms_lost") / pl.col("running")).alias("share")))


def cell_count(study: Path, runs: pl.DataFrame, policy: str = "cellular_disco") -> int | None:
    """``cells.count`` of one ``policy`` run, from its config.yaml."""
    import yaml

    keys = runs.filter(pl.col("policy") == policy)["key"].to_list()
    if not keys:
        return None
    cfg = yaml.safe_load((F.run_path(study, keys[0]) / "config.yaml").read_text())
    return cfg["cells"]["count"]


def make(study: Path, out: Path | None = None) -> F.Finding:
    df = F.read_runs(study)
    cols = ["policy", "replicate"]
    faults = F.read_run_tables(study, df, "faults", cols)
    vms = F.read_run_tables(study, df, "vms", cols)
    shares = lost_shares(faults, vms, df) if faults.height else pl.DataFrame()
    cells = cell_count(study, df) or 8
    order = [p for p in ORDER if p in set(df["policy"].to_list())]
    names = [NAMES[p] for p in order]

    def named(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.col("policy").replace_strict(NAMES).alias("system"))

    fig, (a, b, c) = F.subplots(3, width=4.5)
    kw = dict(x="system", order=names, errorbar=F.CI, capsize=0.1)
    if shares.height:
        s = named(shares).with_columns((pl.col("share") * 100).alias("share_pct"))
        sns.barplot(data=s.to_pandas(), y="vms_lost", ax=a, **kw)
        sns.barplot(data=s.to_pandas(), y="share_pct", ax=b, **kw)
        F.mark_missing(a, s, "system", "vms_lost", names)
    F.reference(b, 100 / cells, f"1 / cells = {100 / cells:.1f} % (one cell's share)")
    if df.height:
        sns.barplot(data=named(df).to_pandas(), y="vms_completed", ax=c, **kw)
    a.set(ylabel="VMs lost per hardware fault", title="VMs lost per fault")
    b.set(ylabel="running VMs lost per fault (%)", title="share of the running VMs")
    c.set(ylabel="VMs completed per run", title="throughput under faults")
    for ax in (a, b, c):
        ax.set_xlabel("system")
        ax.tick_params(axis="x", rotation=20)
    F.legend_outside(fig, (a, b, c))
    n_faults = shares.height
    fig.suptitle(f"Fault-injection campaign, the same faults under every system: "
                 f"{n_faults} effective hardware faults (mean, 95 % t interval)")
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)

    cd = shares.filter(pl.col("policy") == "cellular_disco") if shares.height else shares
    checks = [V.containment_vs_partitions(faults) if faults.height else
              V.check("containment vs fixed partitions", "measured", "[P]", "no faults", None),
              V.lost_share_vs_cells(cd, cells)]
    per = (shares.group_by("policy").agg(pl.col("vms_lost").mean()) if shares.height
           else pl.DataFrame({"policy": [], "vms_lost": []}))
    means = dict(per.iter_rows())
    notes = ["The share of faults 'contained' is not checked: the simulator kills exactly "
             "the VMs its containment rule names, so it is 100 % for every system."]
    n_censored = (faults.filter(pl.col("censored")).height
                  if faults.height and "censored" in faults.columns else 0)
    if n_censored:
        notes.append(f"{n_censored} fault(s) were still recovering when their run ended "
                     "(censored): their losses are pending, so they are left out.")
    return F.Finding(
        figure=STUDY, title="Fault containment", paths=paths, checks=checks,
        paper="1000 injections, every fault contained to one cell and the VMs that used it",
        measured=("VMs lost per effective hardware fault: " + ", ".join(
            f"{NAMES[p]} {F.fmt(means.get(p), '.2f')}" for p in order)),
        notes=notes)


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
