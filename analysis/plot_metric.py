"""Plot one metric of a sweep's ``runs.parquet``: a bar per variant, the 95 % t interval over
replicates as its error bar (the report's one interval method, analysis/verdicts.py).

    python analysis/plot_metric.py results/smoke_balance/runs.parquet cpu_utilization [--by policy]

polars reads and filters; seaborn draws from ``df.to_pandas()``. Writes ``<metric>_by_<by>.png``
next to the Parquet file (or ``--out``) and prints its path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def plot(runs: Path, metric: str, by: str = "policy", out: Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    import polars as pl
    import seaborn as sns
    from verdicts import t_errorbar

    df = pl.read_parquet(runs).filter(pl.col("status") == "ok")
    if metric not in df.columns:
        raise SystemExit(f"{runs}: no column {metric!r}; have {', '.join(df.columns)}")
    if by not in df.columns:
        raise SystemExit(f"{runs}: no column {by!r} to group by")
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    sns.barplot(data=df.select(by, metric).to_pandas(), x=by, y=metric, errorbar=t_errorbar,
                capsize=0.1, ax=ax)
    sns.stripplot(data=df.select(by, metric).to_pandas(), x=by, y=metric, color="black",
                  size=4, ax=ax)
    n = df.group_by(by).len()["len"].max()
    ax.set_title(f"{metric} by {by} ({n} replicates each, mean and 95 % t interval)")
    out = out or runs.parent / f"{metric}_by_{by.replace('.', '_')}.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path)
    p.add_argument("metric")
    p.add_argument("--by", default="policy")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    print(plot(a.runs, a.metric, a.by, a.out))


if __name__ == "__main__":
    main()
