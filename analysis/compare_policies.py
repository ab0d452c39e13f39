"""Compare every variant of a study against a baseline: mean, 95 % CI and ratio per metric.

    python analysis/compare_policies.py results/vs_partitioning --baseline policy=fixed_partition

A *variant* is one combination of the study's swept configuration columns (group choices such
as ``policy`` or ``cells`` and dotted overrides such as ``policy.gang``). The baseline is the
set of runs whose ``--baseline`` column has the given value; when the study also swept other
columns, each variant is compared with the baseline run of the same other values (e.g.
Cellular Disco on cells_4 against fixed partitions on cells_4). Writes
``compare_<column>_<value>.md`` and ``.csv`` (one row per variant and metric) next to the
runs.parquet, or into ``--out``, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402

DEFAULT_METRICS = ("cpu_utilization", "vm_runtime_mean_s", "makespan_s", "vms_completed",
                   "vms_lost", "memory_borrowed_mb", "remote_access_fraction", "disk_writes",
                   "recovery_time_ms_max", "spin_waste_fraction")
COLUMNS = ("metric", "n", "mean", "ci95", "baseline_mean", "ratio")


def parse_baseline(text: str) -> tuple[str, str]:
    column, sep, value = text.partition("=")
    if not sep or not column:
        raise SystemExit(f"--baseline must be COLUMN=VALUE, got {text!r}")
    return column, value


def compare(df: pl.DataFrame, column: str, value: str,
            metrics: list[str] | None = None) -> pl.DataFrame:
    """One row per (variant, metric): the variant columns, then ``COLUMNS``."""
    if column not in df.columns:
        raise SystemExit(f"no column {column!r}; configuration columns: "
                         f"{', '.join(F.config_columns(df))}")
    df = df.with_columns(pl.col(column).cast(pl.Utf8))
    if df.filter(pl.col(column) == value).height == 0:
        raise SystemExit(f"no run has {column}={value}; values: "
                         f"{', '.join(map(str, df[column].unique().sort().to_list()))}")
    variants = [c for c in F.variant_columns(df) if c != column]
    by = [column, *variants]
    numeric = [c for c, t in df.schema.items() if t.is_numeric()]
    metrics = [m for m in (metrics or DEFAULT_METRICS) if m in numeric]
    stats = F.mean_ci(df, by, metrics)
    base = (stats.filter(pl.col(column) == value)
            .select(*variants, "metric", pl.col("mean").alias("baseline_mean")))
    out = stats.join(base, on=[*variants, "metric"], how="left").with_columns(
        pl.when(pl.col("baseline_mean") != 0).then(pl.col("mean") / pl.col("baseline_mean"))
        .otherwise(None).alias("ratio"))
    return out.select(*by, *COLUMNS)


def to_markdown(table: pl.DataFrame) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return F.fmt(v, ".4g")
        return "" if v is None else str(v)

    head = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in r) + " |" for r in table.iter_rows()]
    return "\n".join([head, rule, *rows]) + "\n"


def write(study: Path, baseline: str, out: Path | None = None,
          metrics: list[str] | None = None) -> tuple[pl.DataFrame, list[Path]]:
    column, value = parse_baseline(baseline)
    table = compare(F.read_runs(study), column, value, metrics)
    out = Path(out) if out else Path(study)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"compare_{column.replace('.', '_')}_{value}"
    md, csv = out / f"{stem}.md", out / f"{stem}.csv"
    md.write_text(f"Baseline: `{column}={value}`; mean and 95 % Student-t interval half-width over "
                  f"replicates; ratio = mean / baseline mean.\n\n" + to_markdown(table))
    table.write_csv(csv)
    return table, [md, csv]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", type=Path, help="a study directory (holding runs.parquet)")
    p.add_argument("--baseline", default="policy=fixed_partition")
    p.add_argument("--metrics", nargs="*", help=f"default: {' '.join(DEFAULT_METRICS)}")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    _, paths = write(a.results_dir, a.baseline, a.out, a.metrics)
    print(paths[0].read_text())
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
