"""What a tuning leaves in ``<study>/tune/``: the trials table, the best trial (or the Pareto
front) as ``disco`` commands, and figures drawn with seaborn from Optuna's own answers.

- The best trial is ``study.best_trial``; the Pareto front ``study.best_trials`` (Optuna's
  non-dominated sort of the complete trials).
- Parameter importances are Optuna's PED-ANOVA evaluator (``optuna.importance``), once per
  objective (negated when maximised, as the evaluator ranks lower as better). It needs a few
  complete trials; with too few the summary says so and draws no importance figure.
- Figures: ``history.png`` (each objective per trial, and the best so far), ``pareto.png``
  (the first two objectives, the front joined), ``importances.png``.
"""

from __future__ import annotations

import math
import statistics
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disco.framework import tune_space

if TYPE_CHECKING:
    import polars as pl
    from optuna import Study

    from disco.framework.tune import Tuning

TABLE_ROWS = 12  # trials printed (the whole table is in trials.parquet)


def t_half_width(values: list[float], confidence: float = 0.95) -> float | None:
    """Half-width of the Student-t interval of the mean (None with fewer than 2 values)."""
    if len(values) < 2:
        return None
    from scipy import stats

    sem = statistics.stdev(values) / math.sqrt(len(values))
    return float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sem)


def front(study: Study) -> list[Any]:
    """The best trial (one objective) or the Pareto front (several), by Optuna."""
    if not _complete(study):
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.values[0])


def _complete(study: Study) -> list[Any]:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def trials_frame(study: Study, tuning: Tuning) -> pl.DataFrame:
    """One row per trial: number, state, parameters, objectives (mean and 95 % half-width over
    the replicates), runs, cached runs, on the front, and the command of its config."""
    import polars as pl

    best = {t.number for t in front(study)}
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name,
                               "baseline": bool(t.user_attrs.get("baseline", False))}
        for name, p in tuning.space.items():
            v = t.params.get(name)
            row[name] = None if v is None else (str(v) if p.group else tune_space.snap(p, v))
        for i, name in enumerate(tuning.objectives):
            row[name] = t.values[i] if t.values else None
            row[f"{name}_ci95"] = t.user_attrs.get(f"ci95:{name}")
        row.update(runs=t.user_attrs.get("runs"), cached=t.user_attrs.get("cached"),
                   best=t.number in best, command=t.user_attrs.get("command"))
        rows.append(row)
    return pl.from_dicts(rows, infer_schema_length=None)


def importances(study: Study, tuning: Tuning) -> tuple[dict[str, dict[str, float]], str | None]:
    """PED-ANOVA importances per objective, or ({}, why not)."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    n = len(_complete(study))
    if n < 4:
        return {}, f"{n} complete trials: too few for parameter importances (4 at least)"
    out: dict[str, dict[str, float]] = {}
    for i, (name, direction) in enumerate(zip(tuning.objectives, tuning.directions,
                                              strict=True)):
        sign = -1.0 if direction == "maximize" else 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                got = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(),
                                            target=lambda t, i=i, s=sign: s * t.values[i])
            except (ValueError, RuntimeError, optuna.exceptions.OptunaError) as exc:
                return {}, f"parameter importances failed: {exc}"
        out[name] = dict(got)
    return out, None


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def repeats(frame: pl.DataFrame) -> dict[int, list[int]]:
    """First complete trial of each config -> the later trials that asked for it again."""
    first: dict[str, int] = {}
    out: dict[int, list[int]] = {}
    for r in frame.sort("trial").iter_rows(named=True):
        if r["state"] == "COMPLETE" and r["command"] is not None:
            n = first.setdefault(r["command"], r["trial"])
            if n != r["trial"]:
                out.setdefault(n, []).append(r["trial"])
    return out


def table(frame: pl.DataFrame, tuning: Tuning, rows: pl.DataFrame | None = None) -> str:
    """Aligned text table of ``rows`` (default: the best trials first), one row per config:
    a trial that repeated an earlier one is shown beside it (``4 (= 17, 37)``)."""
    import polars as pl

    again = repeats(frame)
    later = [n for ns in again.values() for n in ns]
    if rows is None:
        rows = frame.filter(pl.col("state") == "COMPLETE").sort(
            tuning.objectives[0], descending=tuning.directions[0] == "maximize")
        rows = rows.filter(~pl.col("trial").is_in(later)).head(TABLE_ROWS)
    else:
        rows = rows.filter(~pl.col("trial").is_in(later))
    head = ["trial", *tuning.space, *tuning.objectives, "runs", "cached"]
    body = []
    for r in rows.iter_rows(named=True):
        same = again.get(r["trial"])
        line = [str(r["trial"]) + (f" (= {', '.join(map(str, same))})" if same else "")
                + (" (baseline)" if r["baseline"] else "")]
        line += [_cell(r[n]) for n in tuning.space]
        for name in tuning.objectives:
            half = r[f"{name}_ci95"]
            line.append(_cell(r[name]) + (f" ± {half:.2g}" if half is not None else ""))
        line += [_cell(r["runs"]), _cell(r["cached"])]
        body.append(line)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip() for x in body]
    return "\n".join(out)


def summary(study: Study, tuning: Tuning, frame: pl.DataFrame,
            imp: dict[str, dict[str, float]], why_not: str | None) -> str:
    import polars as pl

    states = frame["state"].value_counts(sort=True).iter_rows()
    counts = ", ".join(f"{n} {s.lower()}" for s, n in states)
    goal = ", ".join(f"{o} ({d})" for o, d in zip(tuning.objectives, tuning.directions,
                                                  strict=True))
    lines = [f"study {tuning.study}: {frame.height} trials ({counts}); sampler "
             f"{tuning.sampler}, seed {tuning.seed}; objective {goal}; "
             f"{tuning.replicates} run(s) per trial (objective: their mean)", ""]
    best = front(study)
    if not best:
        lines.append("no trial completed")
        return "\n".join(lines)
    numbers = [t.number for t in best]
    chosen = frame.filter(pl.col("trial").is_in(numbers)).sort(
        pl.col("trial").replace_strict(numbers, list(range(len(numbers)))))
    if len(tuning.objectives) == 1:
        lines += [f"best trial: {best[0].number}", table(frame, tuning, chosen), "",
                  f"best {min(TABLE_ROWS, frame.height)} trials:", table(frame, tuning)]
    else:
        distinct = len({t.user_attrs.get("command") for t in best})
        lines += [f"Pareto front: {len(best)} of {frame.height} trials, {distinct} distinct "
                  "configs (none better in one objective without being worse in another)",
                  table(frame, tuning, chosen)]
    base = frame.filter(pl.col("baseline") & (pl.col("state") == "COMPLETE"))
    if base.height:
        lines += ["", "baseline (the config's own values):", table(frame, tuning, base)]
    lines += ["", "paste into disco (each runs that trial's config; its runs are cached):"]
    later = {n for ns in repeats(frame).values() for n in ns}
    for t in best:
        if t.number not in later:
            lines.append(f"  trial {t.number}: {t.user_attrs.get('command')}")
    lines.append("")
    if imp:
        lines.append("parameter importances (Optuna, PED-ANOVA):")
        for name, values in imp.items():
            shown = ", ".join(f"{k} {v:.2f}" for k, v in values.items())
            lines.append(f"  {name}: {shown}")
    elif why_not:
        lines.append(why_not)
    return "\n".join(lines)


def figures(study: Study, tuning: Tuning, frame: pl.DataFrame,
            imp: dict[str, dict[str, float]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    done = frame.filter(pl.col("state") == "COMPLETE").sort("trial")
    if not done.height:
        return []
    out = tuning.out_dir
    paths = []
    k = len(tuning.objectives)
    fig, axes = plt.subplots(k, 1, figsize=(8, 3.2 * k), squeeze=False, sharex=True)
    for ax, name, direction in zip(axes[:, 0], tuning.objectives, tuning.directions,
                                   strict=True):
        trials, values = done["trial"].to_list(), done[name].to_list()
        best = [min(values[:i + 1]) if direction == "minimize" else max(values[:i + 1])
                for i in range(len(values))]
        sns.scatterplot(x=trials, y=values, color="#607d8b", ax=ax, label="trials")
        on = done.filter(pl.col("best"))
        ax.plot(on["trial"].to_list(), on[name].to_list(), "o", color="#c62828",
                label="best trial" if k == 1 else "Pareto front")
        ax.step(trials, best, where="post", color="#1565c0", label=f"best so far ({direction})")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("trial")
    fig.suptitle(f"{tuning.study}: optimisation history ({tuning.sampler})")
    fig.tight_layout()
    paths.append(_save(fig, out / "history.png"))
    if k >= 2:
        x, y = tuning.objectives[:2]
        fig, ax = plt.subplots(figsize=(7, 5))
        sns.scatterplot(data=done.to_pandas(), x=x, y=y, color="#90a4ae", ax=ax,
                        label="trials")
        on = done.filter(pl.col("best")).sort(x)
        ax.errorbar(on[x].to_list(), on[y].to_list(), fmt="o-", color="#c62828",
                    xerr=_half_widths(on, x), yerr=_half_widths(on, y), elinewidth=0.8,
                    ecolor=(0.78, 0.16, 0.16, 0.3), capsize=2,
                    label="Pareto front (95 % t interval of each mean)")
        for (px, py), sub in on.group_by([x, y], maintain_order=True):
            ax.annotate(", ".join(map(str, sub["trial"].to_list())), (px, py),
                        textcoords="offset points", xytext=(5, 5), fontsize=8)
        base = done.filter(pl.col("baseline"))
        if base.height:
            ax.plot(base[x].to_list(), base[y].to_list(), "*", ms=14, color="#f9a825",
                    label="baseline", zorder=5)
        ax.set_title(f"{tuning.study}: Pareto front" + (" of the first two objectives"
                                                         if k > 2 else "")
                     + f"\n{x} ({tuning.directions[0]}) vs {y} ({tuning.directions[1]})",
                     fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(_save(fig, out / "pareto.png"))
    if imp:
        fig, axes = plt.subplots(1, len(imp), figsize=(5 * len(imp), 0.5 * len(tuning.space)
                                                        + 2), squeeze=False)
        for ax, (name, values) in zip(axes[0], imp.items(), strict=True):
            sns.barplot(x=list(values.values()), y=list(values), ax=ax, color="#1565c0")
            ax.set_xlabel("importance (PED-ANOVA)")
            ax.set_title(name, fontsize=10)
        fig.suptitle(f"{tuning.study}: parameter importances")
        fig.tight_layout()
        paths.append(_save(fig, out / "importances.png"))
    return paths


def _half_widths(frame: pl.DataFrame, name: str) -> list[float] | None:
    halves = frame[f"{name}_ci95"].to_list()
    return None if all(h is None for h in halves) else [h or 0.0 for h in halves]


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write(study: Study, tuning: Tuning) -> tuple[str, list[Path]]:
    """The summary text and the files: trials.parquet, summary.txt and the figures."""
    from disco.framework.results import write_bytes, write_parquet

    frame = trials_frame(study, tuning)
    imp, why_not = importances(study, tuning)
    text = summary(study, tuning, frame, imp, why_not)
    out = tuning.out_dir
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "trials.parquet", frame)
    write_bytes(out / "summary.txt", (text + "\n").encode())
    paths = [tuning.db, out / "trials.parquet", out / "summary.txt"]
    if tuning.figures:
        paths += figures(study, tuning, frame, imp)
    return text, paths
