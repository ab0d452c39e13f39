"""Paging (PAPER.md, Results: paging; conf/experiment/paging).

Memory overcommitted by shrinking the machine's memory under a Database-heavy mix with Pmakes
(16 small Database VMs, two per cell sharing their guest kernel, two Web servers and four
Pmakes that free memory as they work); each paging optimisation of Cellular Disco on or off:
never write freed pages (``skip_freed``), write a shared page once (``shared_once``), turn
guest page-outs of paged-out memory into remappings (``virtual_disk``). Panels against the
overcommit ratio (VM memory / machine memory): disk writes, disk writes per CPU-second of guest
work done, the writes each optimisation avoided, VCPU time waiting for the paging disks, VM run
time. The paper gives no numbers.

The guests' demand follows their work (disco/vmm/guest_behaviour.py), so where the working sets
of the VMs sharing a cell fit its memory what is paged is what the work makes cold, whatever the
disks (tests/test_paging.py). In this mix they do not at any overcommitted size: more or faster
disks cut the stall and run time, but a faster disk or an optimisation that shortens the waits
can *raise* the writes (disco/vmm/paging.py: with short waits the VCPUs stop taking turns at the
disk; at 256 MB per node, seed 0, 88 / 122 / 295 writes at 5 / 20 / 100 MB/s for the same
400 CPU-seconds of work). Hence the writes per unit of work. One run with an optimisation on
can write more than the same seed with it off; read the means.

    python analysis/paging.py results/paging
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402
import verdicts as V  # noqa: E402

STUDY = "paging"
SWITCHES = {"policy.paging_skip_freed": "skip_freed", "policy.paging_shared_once": "shared_once",
            "policy.paging_virtual_disk": "virtual_disk"}
ALL_ON, ALL_OFF = "all on", "all off"
AVOIDED = ["disk_writes_avoided_free", "disk_writes_avoided_shared", "disk_writes_avoided_double"]


def label(df: pl.DataFrame) -> pl.DataFrame:
    """A ``setting`` column naming which optimisations are on."""
    for col in SWITCHES:
        if col not in df.columns:
            df = df.with_columns(pl.lit(True).alias(col))

    def name(row: dict) -> str:
        on = [short for col, short in SWITCHES.items() if row[col]]
        return ALL_ON if len(on) == len(SWITCHES) else ALL_OFF if not on else "+".join(on)

    return df.with_columns(
        pl.struct(list(SWITCHES)).map_elements(name, return_dtype=pl.Utf8).alias("setting"),
        pl.sum_horizontal(AVOIDED).alias("writes_avoided"))


def make(study: Path, out: Path | None = None) -> F.Finding:
    df = label(F.read_runs(study))
    if df.height and "work_done_cpu_s" in df.columns:
        df = df.with_columns((pl.col("disk_writes") / pl.col("work_done_cpu_s"))
                             .alias("writes_per_work"))
    fig, (a, p, c, st, b) = F.subplots(5, width=4.2)
    x = "memory overcommit (VM memory / machine memory)"
    if df.height:
        pdf = df.sort("setting").rename({"setting": "optimisations on"}).to_pandas()
        kw = dict(x="memory_overcommit_ratio", hue="optimisations on", marker="o",
                  errorbar=F.CI)
        sns.lineplot(data=pdf, y="disk_writes", ax=a, legend=False, **kw)
        if "writes_per_work" in pdf.columns:
            sns.lineplot(data=pdf, y="writes_per_work", ax=p, legend=False, **kw)
        sns.lineplot(data=pdf, y="writes_avoided", ax=c, legend=False, **kw)
        sns.lineplot(data=pdf, y="paging_stall_s", ax=st, legend=False, **kw)
        sns.lineplot(data=pdf, y="vm_runtime_mean_s", ax=b, **kw)
    a.set(xlabel=x, ylabel="paging disk writes (requests)", title="disk writes")
    p.set(xlabel=x, ylabel="disk writes per CPU-second of work done",
          title="writes per unit of work")
    c.set(xlabel=x, ylabel="disk writes avoided (requests)", title="writes avoided")
    st.set(xlabel=x, ylabel="VCPU time waiting for the disks (s)", title="paging stall")
    b.set(xlabel=x, ylabel="mean VM run time (s)", title="run time")
    F.side_legend(b, "optimisations on")
    n_min, _ = F.replicates(df)
    fig.suptitle("Paging under memory overcommit, each optimisation on/off "
                 f"(mean, 95 % t interval, {n_min} replicate(s))")
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)

    top = df.filter(pl.col("memory_overcommit_ratio") == df["memory_overcommit_ratio"].max()) \
        if df.height else df
    w = {s: top.filter(pl.col("setting") == s)["disk_writes"].mean() for s in (ALL_ON, ALL_OFF)}
    saved = top.filter(pl.col("setting") == ALL_ON)["writes_avoided"].mean()
    lo = (df.filter(pl.col("memory_overcommit_ratio") < 1)["disk_writes"].mean()
          if df.height else None)
    ratio = top["memory_overcommit_ratio"].max() if top.height else None
    unfinished = (df.filter(pl.col("vms_completed") < pl.col("vms_total")).height
                  if df.height and "vms_completed" in df.columns else 0)
    notes = ["Where the working sets sharing a cell do not fit its memory a shorter wait can "
             "raise the writes (the VCPUs stop taking turns at the disk): compare writes per "
             "CPU-second of work, the stall, and the means."]
    if unfinished:
        notes.append(f"{unfinished} run(s) left a VM unfinished: their writes are for less "
                     "work (see the writes per unit of work).")
    return F.Finding(
        figure=STUDY, title="Paging", paths=paths, paper="no numbers reported",
        checks=[V.check("the paper reports no paging numbers: nothing to test against (the "
                        "knob-sensitivity study checks each optimisation's direction)",
                        "measured", "[S] PAPER.md Paging", "shown in the figure", None)],
        measured=(f"at overcommit {F.fmt(ratio, '.2f')}: {F.fmt(w[ALL_ON], '.0f')} disk writes "
                  f"with every optimisation on ({F.fmt(saved, '.0f')} avoided) vs "
                  f"{F.fmt(w[ALL_OFF], '.0f')} with all off; "
                  f"{F.fmt(lo, '.0f')} writes without overcommit"),
        notes=notes)


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
