"""Knob sensitivity (conf/experiment/sensitivity.yaml, run by experiments/one_at_a_time.py).

Each knob was moved from its default to one other value on a scenario where it should matter,
the same seeds for both values. Per knob: the paired difference of its metric (``to - from``,
replicate by replicate) relative to the baseline's mean, its 95 % t interval, and the verdict of
``verdicts.knob_verdict`` (responds / dead / inverted / unclear). Figure: a tornado of the
relative effects (symmetric log scale), coloured by verdict, with the expected direction.

    python analysis/sensitivity.py results/sensitivity
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import matplotlib.patches as mpatches
import polars as pl
from matplotlib.ticker import FuncFormatter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as F  # noqa: E402
import verdicts as V  # noqa: E402

STUDY = "sensitivity"
COLOURS = {"responds": "#2e7d32", "dead": "#9e9e9e", "inverted": "#c62828",
           "unclear": "#f9a825"}
ARROWS = {"up": "↑", "down": "↓", "change": "↕"}
DEAD_BELOW = 0.01  # when the runs do not say (their dead_below column: the YAML's)


def derived(df: pl.DataFrame, study: Path | None) -> pl.DataFrame:
    """The derived metrics a knob may name: ``vms_lost_per_fault`` (VMs lost per fault that
    hit a live part of the machine and finished recovering; null without one) and
    ``vm_runtime_all_s`` (figures)."""
    # Faults that hit a live part of the machine and whose recovery finished: a censored one
    # (still recovering at the end) has lost no VMs yet, its dependents are pending.
    eff = pl.col("faults_injected") - pl.col("faults_ignored")
    if "faults_censored" in df.columns:
        eff = eff - pl.col("faults_censored")
    if {"faults_injected", "faults_ignored", "vms_lost"} <= set(df.columns):
        df = df.with_columns(pl.when(eff > 0).then(pl.col("vms_lost") / eff)
                             .otherwise(None).alias("vms_lost_per_fault"))
    if study is not None and "vm_runtime_all_s" not in df.columns:
        df = F.with_runtime_all(study, df)
    return df


def effects(df: pl.DataFrame, dead_below: float = DEAD_BELOW) -> pl.DataFrame:
    """One row per knob: change, metric, expected direction, baseline mean, relative effect
    and its interval, n, verdict. ``df``: the labelled runs (experiments/one_at_a_time.py)."""
    rows = []
    for (knob_id,), sub in df.group_by("knob_id", maintain_order=True):
        first = sub.row(0, named=True)
        metric = first["metric"]
        if metric not in sub.columns:
            raise KeyError(f"{knob_id}: no metric {metric!r} in the runs")
        side = {s: dict(sub.filter(pl.col("side") == s)
                        .select("replicate", pl.col(metric).cast(pl.Float64)).iter_rows())
                for s in ("from", "to")}
        reps = sorted(set(side["from"]) & set(side["to"]))
        base, alt = [side["from"][r] for r in reps], [side["to"][r] for r in reps]
        ke = V.knob_verdict(base, alt, first["expect"], dead_below)
        values = {s: sub.filter(pl.col("side") == s)["value"][0] for s in ("from", "to")}
        rows.append({
            "knob": first["knob"], "scenario": first["scenario"],
            "change": f"{values['from']} → {values['to']}", "metric": metric,
            "expected": first["expect"], "baseline": V.t_interval(base).mean,
            "effect": ke.effect.mean, "effect_lo": ke.effect.lo, "effect_hi": ke.effect.hi,
            "n": ke.effect.n, "verdict": ke.verdict})
    return pl.from_dicts(rows, infer_schema_length=None) if rows else pl.DataFrame()


def effect_text(row: dict) -> str:
    iv = V.Interval(row["effect"], row["effect_lo"], row["effect_hi"], row["n"])
    return iv.text("+.1%") if iv.n else "none completed"


def tornado(table: pl.DataFrame, out: Path) -> list[Path]:
    order = table.with_columns(pl.col("effect").abs().alias("_size")).sort("_size")
    fig, (ax,) = F.subplots(1, width=11.0, height=0.28 * max(order.height, 4) + 1.8)
    labels = [f"{r['knob']} {r['change']} @ {r['scenario']}: {r['metric']} "
              f"{ARROWS[r['expected']]}" for r in order.iter_rows(named=True)]
    ys = list(range(order.height))
    effect = [100 * (e if e == e else 0.0) for e in order["effect"]]
    lo = [100 * (e if e == e else 0.0) for e in order["effect_lo"]]
    hi = [100 * (e if e == e else 0.0) for e in order["effect_hi"]]
    ax.barh(ys, effect, color=[COLOURS[v] for v in order["verdict"]], height=0.7)
    ax.errorbar(effect, ys, xerr=[[max(e - a, 0) for e, a in zip(effect, lo, strict=True)],
                                  [max(b - e, 0) for e, b in zip(effect, hi, strict=True)]],
                fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+g} %" if v else "0"))
    ax.set_yticks(ys, labels, fontsize=7)
    ax.set(xlabel="effect of the change on the metric, % of the baseline\n"
                  "(symmetric log scale; 95 % t interval of the paired difference)",
           title="Knob sensitivity: one knob moved at a time, the same seeds for both values")
    handles = [mpatches.Patch(color=COLOURS[v], label=v) for v in V.KNOB_VERDICTS]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8,
               frameon=False, title="verdict (↑ / ↓: the metric is expected to rise / fall)",
               title_fontsize=8)
    return F.save(fig, out, STUDY)


def make(study: Path, out: Path | None = None) -> F.Finding:
    df = derived(F.read_runs(study), study)
    dead_below = (float(df["dead_below"][0]) if "dead_below" in df.columns and df.height
                  else DEAD_BELOW)
    table = effects(df, dead_below)
    paths = tornado(table, F.out_dir_for(study, out)) if table.height else []
    counts = Counter(table["verdict"].to_list()) if table.height else Counter()
    shown = table.with_columns(
        pl.struct("effect", "effect_lo", "effect_hi", "n")
        .map_elements(effect_text, return_dtype=pl.Utf8).alias("effect (95 % t interval)")
    ).select("knob", "scenario", "change", "metric", "expected", "effect (95 % t interval)",
             "verdict") if table.height else table
    summary = ", ".join(f"{counts[v]} {v}" for v in V.KNOB_VERDICTS if counts[v])
    return F.Finding(
        figure=STUDY, title="Knob sensitivity", paths=paths,
        paper="(no paper claim: the simulator auditing its own knobs)",
        measured=f"{table.height} knobs: {summary}" if table.height else "no knobs",
        notes=[f"A knob responds when the interval excludes 0 on the expected side; it is "
               f"dead when its effect is below {dead_below:.0%} of the baseline and not "
               "clearly on the expected side, inverted when the interval excludes 0 on the "
               "wrong side, unclear when the interval includes 0 but the effect is not small "
               "(more seeds). The relative interval is the paired difference's interval "
               "divided by the baseline's mean."],
        tables=[("Every knob, moved once from its default", shown)])


if __name__ == "__main__":
    F.main(make, STUDY, doc=__doc__)
