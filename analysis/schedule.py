"""The schedule of a traced run as a Gantt chart: which VM ran on which CPU, when.

    python analysis/schedule.py results/default/runs/<key> --from 2 --to 3 [--out x.png]

Reads the run's trace (``trace.json`` or ``trace.json.gz``, written by ``disco ... trace=true``,
docs/trace.md). One row per physical CPU, grouped by cell (lines between cells); one colour per
VM; fault recovery phases shaded over the whole machine. The report uses ``pair`` for one short
window of the cpu_balance study: Raytrace overcommitted two to one, gang scheduling on and off,
side by side (``cpu_balance_pair``).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from disco.trace import CELL_PID0, MACHINE_PID, load  # noqa: E402

TRACE_NAMES = ("trace.json", "trace.json.gz")
PHASE_COLOURS = {"detection": "#fdd0a2", "diagnosis": "#fdae6b", "agreement": "#fd8d3c",
                 "unwedge": "#e6550d", "termination": "#a63603", "reboot": "#7f2704"}
# cpu_balance's gang on / off pair (conf/experiment/cpu_balance.yaml): this window of the
# Raytrace runs at the default period, replicate 0.
STUDY_WINDOW = (2.0, 2.3)
PAIR = (("gang on", "cellular_disco"), ("gang off", "gang_off"))


def trace_of(run_dir: Path) -> Path | None:
    """The run's trace file, or None if it was not traced."""
    for name in TRACE_NAMES:
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def draw(ax, trace: dict, t0: float, t1: float, title: str = "", colours: dict | None = None
         ) -> dict[str, tuple]:
    """Draw the window ``[t0, t1]`` (seconds) of ``trace`` on ``ax``; returns VM -> colour."""
    meta = trace["otherData"]
    cpus, cells = meta["cpus"], meta["cells"]
    a_us, b_us = t0 * 1e6, t1 * 1e6
    bars: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    phases: list[tuple[str, float, float]] = []
    for e in trace["traceEvents"]:
        if e["ph"] != "X" or e["ts"] > b_us or e["ts"] + e["dur"] < a_us:
            continue
        if e["pid"] >= CELL_PID0:
            bars[e["name"]][e["tid"]].append(((max(e["ts"], a_us)) * 1e-6,
                                              (min(e["ts"] + e["dur"], b_us)
                                               - max(e["ts"], a_us)) * 1e-6))
        elif e["pid"] == MACHINE_PID:
            phases.append((e["name"], e["ts"] * 1e-6, (e["ts"] + e["dur"]) * 1e-6))
    names = sorted(bars, key=lambda n: (len(n), n))
    if colours is None:
        colours = dict(zip(names, sns.color_palette("husl", max(len(names), 1)), strict=False))
    for name in names:
        for cpu, spans in bars[name].items():
            ax.broken_barh(spans, (cpu - 0.4, 0.8), facecolors=colours.get(name, "grey"),
                           linewidth=0)
    shown = set()
    for name, a, b in phases:
        ax.axvspan(max(a, t0), min(b, t1), color=PHASE_COLOURS.get(name, "#cccccc"), alpha=0.35,
                   label=None if name in shown else name, zorder=0)
        shown.add(name)
    per_cell = cpus // cells
    for c in range(1, cells):
        ax.axhline(c * per_cell - 0.5, color="black", linewidth=0.6)
    ax.set_ylim(cpus - 0.5, -0.5)
    ax.set_xlim(t0, t1)
    step = max(1, cpus // 16)
    ax.set_yticks(range(0, cpus, step))
    ax.set_yticklabels([f"cell {i // per_cell} / cpu {i}" for i in range(0, cpus, step)],
                       fontsize=7)
    ax.set_xlabel("simulated time (s)")
    ax.set_title(title or f"schedule {t0:g}-{t1:g} s")
    if shown:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="recovery",
                  title_fontsize=7)
    return colours


def figure(panels: list[tuple[str, Path]], t0: float, t1: float, out: Path) -> Path:
    """One Gantt panel per (title, run dir), side by side, saved as ``out`` (PNG)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(7.0 * len(panels), 5.5),
                             layout="constrained", squeeze=False)
    for ax, (title, run_dir) in zip(axes[0], panels, strict=True):
        path = trace_of(run_dir)
        if path is None:
            raise FileNotFoundError(f"{run_dir}: no trace (run it with trace=true)")
        draw(ax, load(path), t0, t1, title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def pair_runs(study_dir: Path) -> list[tuple[str, str]]:
    """cpu_balance's two runs for the schedule figure: (label, key), gang on then off."""
    path = Path(study_dir) / "runs.parquet"
    if not path.is_file():
        return []
    runs = pl.read_parquet(path)
    need = {"workload", "policy", "replicate", "key"}
    if not need <= set(runs.columns):
        return []
    period = "policy.periodic_period_ms"
    runs = runs.filter((pl.col("workload") == "raytrace_overcommit")
                       & (pl.col("replicate") == 0) & (pl.col("status") == "ok"))
    if period in runs.columns:
        runs = runs.filter(pl.col(period).cast(pl.Float64) == 100.0)
    out = []
    for label, policy in PAIR:
        keys = runs.filter(pl.col("policy") == policy)["key"].to_list()
        if keys:
            out.append((label, keys[0]))
    return out if len(out) == len(PAIR) else []


def cpu_balance_pair(study_dir: Path, out_dir: Path) -> tuple[Path | None, str]:
    """The report's schedule figure for cpu_balance: (PNG or None, a caption or why not)."""
    from disco.framework.results import run_dir

    study_dir = Path(study_dir)
    pairs = pair_runs(study_dir)
    if not pairs:
        return None, "no Raytrace gang on / off runs in this study"
    dirs = [(label, run_dir(study_dir.parent, study_dir.name, key)) for label, key in pairs]
    missing = [label for label, d in dirs if trace_of(d) is None]
    if missing:
        return None, (f"the {' and '.join(missing)} run has no trace: experiments/reproduce.py "
                      "traces both (or run the study with trace.runs=first)")
    t0, t1 = STUDY_WINDOW
    png = figure([(f"Raytrace 2:1, {label}", d) for label, d in dirs], t0, t1,
                 Path(out_dir) / "cpu_balance_schedule.png")
    return png, (f"Schedule of {t0:g}-{t1:g} s of the Raytrace runs (overcommitted two to one, "
                 "replicate 0), gang scheduling on (left) and off (right): one row per CPU, one "
                 "colour per VM (analysis/schedule.py, from the runs' traces).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a traced run's directory")
    p.add_argument("--from", dest="t0", type=float, default=0.0, help="window start (s)")
    p.add_argument("--to", dest="t1", type=float, default=None,
                   help="window end (s; default: from + 1)")
    p.add_argument("--out", type=Path, default=None,
                   help="PNG to write (default: <run_dir>/schedule_<from>_<to>.png)")
    a = p.parse_args(argv)
    t1 = a.t1 if a.t1 is not None else a.t0 + 1.0
    if not 0 <= a.t0 < t1:
        print(f"schedule.py: error: --from {a.t0:g} --to {t1:g}: expected 0 <= from < to",
              file=sys.stderr)
        return 2
    if trace_of(a.run_dir) is None:
        print(f"schedule.py: error: {a.run_dir}: no trace.json (run it with trace=true)",
              file=sys.stderr)
        return 2
    out = a.out or a.run_dir / f"schedule_{a.t0:g}_{t1:g}.png"
    print(figure([(f"{a.run_dir.name}: {a.t0:g}-{t1:g} s", a.run_dir)], a.t0, t1, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
