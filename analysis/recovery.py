"""Fault recovery time (PAPER.md, Results: fault recovery; conf/experiment/recovery).

One node fault; the longest recovery of the run against the memory per node (one line per
machine size) and against the number of nodes (one line per memory size). Paper: < 0.5 s on the
paper machine (16 nodes x 512 MB), and memory per node dominates.

    python analysis/recovery.py results/recovery
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import seaborn as sns

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402

STUDY = "recovery"
MEM, NODES = "machine.memory_per_node_mb", "machine.nodes"
PAPER_S = 0.5
PAPER_MACHINE = {MEM: 512, NODES: 16}


def times(df: pl.DataFrame) -> pl.DataFrame:
    if MEM not in df.columns:
        df = df.with_columns(pl.lit(PAPER_MACHINE[MEM]).alias(MEM))
    if NODES not in df.columns:
        df = df.with_columns(pl.lit(PAPER_MACHINE[NODES]).alias(NODES))
    return (df.filter(pl.col("faults_injected") > 0)
            .with_columns((pl.col("recovery_time_ms_max") / 1000).alias("recovery_s")))


def _spread(t: pl.DataFrame, vary: str, fixed: str, at: int) -> float | None:
    """Range of mean recovery time when ``vary`` is swept and ``fixed`` held at ``at``."""
    s = t.filter(pl.col(fixed) == at).group_by(vary).agg(pl.col("recovery_s").mean())
    return (s["recovery_s"].max() - s["recovery_s"].min()) if s.height > 1 else None


def make(study: Path, out: Path | None = None) -> F.Finding:
    t = times(F.read_runs(study))
    fig, (a, b) = F.subplots(2)
    if t.height:
        pdf = t.to_pandas()
        sns.lineplot(data=pdf, x=MEM, y="recovery_s", hue=NODES, marker="o", errorbar=F.CI,
                     palette="viridis", ax=a)
        sns.lineplot(data=pdf, x=NODES, y="recovery_s", hue=MEM, marker="o", errorbar=F.CI,
                     palette="crest", ax=b)
    for ax in (a, b):
        F.reference(ax, PAPER_S, "paper: < 0.5 s (16 nodes x 512 MB)")
    a.set(xscale="log", xlabel="memory per node (MB, log scale)", ylabel="recovery time (s)",
          title="vs memory per node")
    b.set(xlabel="nodes", ylabel="recovery time (s)", title="vs number of nodes")
    if t.height:
        F.value_ticks(a, t[MEM].unique().to_list())
        F.value_ticks(b, t[NODES].unique().to_list())
    fig.suptitle("Fault recovery time after one node fault (mean, 95 % CI)")
    paths = F.save(fig, F.out_dir_for(study, out), STUDY)

    at = t.filter((pl.col(MEM) == PAPER_MACHINE[MEM]) & (pl.col(NODES) == PAPER_MACHINE[NODES]))
    paper_s = at["recovery_s"].mean() if at.height else None
    mem_spread = _spread(t, MEM, NODES, PAPER_MACHINE[NODES])
    node_spread = _spread(t, NODES, MEM, PAPER_MACHINE[MEM])
    mem_rises = None
    s = t.filter(pl.col(NODES) == PAPER_MACHINE[NODES]).group_by(MEM).agg(
        pl.col("recovery_s").mean()).sort(MEM)
    if s.height > 1:
        mem_rises = bool((s["recovery_s"].diff().drop_nulls() > 0).all())
    parts = [f"{F.fmt(paper_s, '.3f')} s at 16 nodes x 512 MB" if paper_s is not None else
             "paper machine not in the sweep"]
    if mem_spread is not None and node_spread is not None:
        parts.append(f"range {F.fmt(mem_spread, '.3f')} s over memory per node vs "
                     f"{F.fmt(node_spread, '.3f')} s over node count")
    checks = [paper_s is not None and paper_s < PAPER_S, mem_rises,
              None if mem_spread is None or node_spread is None else mem_spread > node_spread]
    agrees = None if paper_s is None else all(c is not False for c in checks)
    return F.Finding(
        figure=STUDY, title="Fault recovery time", paths=paths,
        paper="< 0.5 s; memory per node dominates", measured="; ".join(parts), agrees=agrees,
        criterion="< 0.5 s at paper scale, rises with memory per node, memory range > node range")


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
