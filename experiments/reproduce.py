"""``make run``: run the paper's studies, then draw every figure and build the report.

    python experiments/reproduce.py [study ...] [--size small|full] [override ...]

Studies (default: all, in PAPER.md's order): overhead, containment_overhead, cpu_balance,
memory_borrowing, paging, recovery, containment, vs_partitioning, then sensitivity (every knob
moved once, experiments/one_at_a_time.py: one sweep per knob, run as one batch), plus
smoke_balance (the framework's smoke study and its figure). Each is
``conf/experiment/<study>.yaml`` (small) or ``<study>_full.yaml`` (full); runs already complete
are skipped by the framework; a run another study of the same results folder completed (same
config, so the same run key) is copied from it. The sweeps run on one private local Ray
(``ray_backend.shared``), stopped after the last: one Ray start for all studies, none when every
study's sweep is cached. Every study is planned before any runs, two at once in forked
processes, so a bad value is exit 2 with nothing run; meanwhile the default local Ray starts
(with ``ray.*`` or ``sweep.serial`` given, the first sweep with runs left starts what it asks
for instead). Any
``key=value`` argument is a Hydra override passed to every sweep, e.g. ``results_dir=/tmp/r``,
``sweep.serial=true`` (no Ray: every run in this process) or ``ray.address=auto`` (an existing
cluster); ``sensitivity.*`` (the knob table, e.g. ``sensitivity.dead_below=0.02``) goes to the
sensitivity study alone.

After cpu_balance, its two Raytrace runs that the report shows as a schedule (gang on and off,
replicate 0, ``analysis/schedule.py``) run again with a trace of that window: the same runs and
metrics (a trace changes no result), traced once and cached after.

Then ``analysis/<study>.py`` draws each figure and ``analysis/report.py`` writes
``<results_dir>/report/index.md`` and ``index.html``.

A reproduction whose runs all succeeded is remembered (``disco/framework/fastpath.py``): the
same command again, with nothing changed (configs, code, these scripts, the analysis scripts,
the plotting packages, the working directory), checks every run, runs table, figure and report
file on disk by content and prints the same findings, without planning, running or drawing.
Anything changed or damaged is a miss, and the normal path runs (complete runs still skipped).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "analysis"))
sys.path.insert(0, str(ROOT / "experiments"))

SMOKE = "smoke_balance"
KNOBS = "sensitivity"  # a one-at-a-time study: experiments/one_at_a_time.py


def studies() -> list[str]:
    from studies import STUDIES

    return [*STUDIES, SMOKE]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("items", nargs="*", metavar="study|override",
                   help=f"studies ({', '.join(studies())}) and key=value overrides")
    p.add_argument("--size", choices=("small", "full"), default="small")
    a = p.parse_intermixed_args(argv)
    a.overrides = [x for x in a.items if "=" in x]
    a.studies = [x for x in a.items if "=" not in x] or studies()
    unknown = sorted(set(a.studies) - set(studies()))
    if unknown:
        p.error(f"unknown study {', '.join(unknown)}; known: {', '.join(studies())}")
    return a


def for_study(study: str, overrides: list[str]) -> list[str]:
    """The overrides a study gets: all of them, but ``sensitivity.*`` (the knob table) only
    for the sensitivity study, which alone has a table (the planner refuses any other)."""
    def table(o: str) -> bool:
        return o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == "sensitivity"

    return list(overrides) if study == KNOBS else [o for o in overrides if not table(o)]


def plan_study(study: str, size: str, overrides: list[str]):
    """One study's plan, (plan, knob plans or None, argv); None on a config error (printed)."""
    import one_at_a_time

    from disco.config import ConfigError
    from disco.framework.plan import PlanError, make_plan

    experiment = study if size == "small" or study == SMOKE else f"{study}_full"
    overrides = for_study(study, overrides)
    args = [f"+experiment={experiment}", *overrides]
    argv = ["reproduce.py", *args]
    try:
        knobs = one_at_a_time.plan_knobs(experiment, overrides, argv) if study == KNOBS else None
        return (knobs.merged if knobs else make_plan(args, argv=argv)), knobs, argv
    except (ConfigError, PlanError) as e:
        print(f"{study}: error: {e}", file=sys.stderr)
        return None


# Planning order for two processes: the longest first (the sensitivity table composes 23
# group selections, vs_partitioning 12), so neither process is left with a long one at the end.
PLAN_FIRST = (KNOBS, "vs_partitioning")


def plan_studies(studies: list[str], size: str, overrides: list[str],
                 meanwhile: Callable[[], Any] = lambda: None) -> tuple[dict, Any]:
    """``plan_study`` of every study (in ``studies``' order), two at once in forked processes,
    and what ``meanwhile`` returns (called here while they plan).

    Planning is Hydra composing each study's group selections: ~13 s of one core for all
    studies at full size, with nothing else to do then. A plan is the same wherever it is
    made (keys are hashes of its configs) and small to send back (a few MB). A config error
    is printed by the process that planned it. One process where fork is not safe (not Linux,
    other threads running), or for a single study.
    """
    import multiprocessing
    import threading

    # fork copies only the calling thread: safe from a process that has no other (no Ray
    # driver's threads, as in a notebook or the test session that started one)
    if (len(studies) < 2 or sys.platform != "linux" or (os.cpu_count() or 1) < 2
            or threading.active_count() > 1):
        extra = meanwhile()
        return {study: plan_study(study, size, overrides) for study in studies}, extra
    # The plans' classes, imported before the children start: this process unpickles plans
    # while ``meanwhile`` may run ray.init, which has the script's folder off sys.path.
    import one_at_a_time  # noqa: F401

    import disco.framework.plan  # noqa: F401

    fork = multiprocessing.get_context("fork")
    todo, done = fork.SimpleQueue(), fork.SimpleQueue()
    for study in sorted(studies, key=lambda s: PLAN_FIRST.index(s) if s in PLAN_FIRST
                        else len(PLAN_FIRST)):
        todo.put(study)
    for _ in range(2):
        todo.put(None)  # one end mark per planner: a planner never waits for a study not there

    def worker() -> None:  # forked: the function is not pickled, only what it sends back
        import contextlib
        import io
        import traceback

        while (study := todo.get()) is not None:
            out, err = io.StringIO(), io.StringIO()  # printed by the parent, in study order
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    plan = plan_study(study, size, overrides)
                done.put((study, True, plan, out.getvalue(), err.getvalue()))
            except BaseException:
                done.put((study, False, traceback.format_exc(), out.getvalue(),
                          err.getvalue()))

    procs = [fork.Process(target=worker, daemon=True) for _ in range(2)]
    for proc in procs:
        proc.start()
    got: dict = {}

    def collect() -> None:  # read as they come: a child blocks on a full pipe
        while len(got) < len(studies):
            study, *rest = done.get()
            got[study] = rest

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    extra = meanwhile()
    while reader.is_alive():
        reader.join(0.2)
        if not reader.is_alive():
            break
        if not any(proc.is_alive() for proc in procs) and done.empty():
            reader.join(0.5)
            if reader.is_alive():
                raise RuntimeError("a planning process ended without sending its plans")
    for proc in procs:
        proc.join()
    for study in studies:
        ok, value, out, err = got[study]
        sys.stdout.write(out)
        sys.stderr.write(err)
        if not ok:
            raise RuntimeError(f"planning {study} failed:\n{value}")
    return {study: got[study][1] for study in studies}, extra


def run_study(study: str, planned):
    """Run a planned study's sweep; its outcome, or None when Ray cannot be started."""
    import one_at_a_time

    from disco.framework.ray_backend import RayStartError
    from disco.framework.sweep import run_sweep

    plan, knobs, argv = planned
    try:
        return one_at_a_time.run(knobs, argv) if knobs else run_sweep(plan, argv=argv)
    except RayStartError as e:
        print(f"{study}: error: {e}", file=sys.stderr)
        return None


def trace_schedule_pair(planned) -> None:
    """cpu_balance: give the report's gang on / off pair (``schedule.pair_runs``) the trace of
    the window it draws, through the sweep's cache (a traced run is skipped next time)."""
    import dataclasses

    from schedule import PAIR, STUDY_WINDOW

    from disco.framework.sweep import run_sweep

    plan, _, argv = planned
    policies = {policy for _, policy in PAIR}
    specs = [s for s in plan.runs if s.replicate == 0
             and s.columns.get("workload") == "raytrace_overcommit"
             and s.columns.get("policy") in policies
             and float(s.columns.get("policy.periodic_period_ms", 100.0)) == 100.0]
    opts = {"window": list(STUDY_WINDOW), "counter_ms": 10.0, "gzip": False}
    traced = dataclasses.replace(plan, runs=[dataclasses.replace(s, trace=opts) for s in specs])
    outcome = run_sweep(traced, argv=argv, gather=False)
    print(f"schedule traces: {outcome.done} traced, {outcome.skipped} cached")


# What a reproduction's output depends on besides the framework's fingerprint (fastpath.py):
# these scripts, the figure scripts and the versions of what reads and draws.
SOURCES = (ROOT / "experiments", ROOT / "analysis")
PACKAGES = ("polars", "matplotlib", "seaborn", "jinja2", "scipy", "numpy")
# ... and what one study's runs depend on besides it: these scripts and the schedule pair's
# choice of runs to trace (analysis/schedule.py), not the figures.
STUDY_SOURCES = (ROOT / "experiments", ROOT / "analysis" / "schedule.py")


def _command(a: argparse.Namespace) -> list[str]:
    """What a reproduction's re-run manifest is keyed by (with ``fastpath.fingerprint``)."""
    return ["reproduce.py", f"--size={a.size}", *a.studies, *a.overrides]


def _study_command(a: argparse.Namespace, study: str) -> list[str]:
    return ["reproduce.py", f"--size={a.size}", study, *for_study(study, a.overrides)]


def study_cached(a: argparse.Namespace, study: str) -> dict | None:
    """A finished sweep of one study for this command (its runs complete and unchanged: a
    figure script edited since need not plan or read them again), or None."""
    from disco.framework import fastpath

    return fastpath.lookup(_study_command(a, study), None, STUDY_SOURCES)


def remember_study(a: argparse.Namespace, study: str, planned, outcome) -> None:
    from disco.framework import fastpath

    plan = planned[0]
    if outcome.ok and outcome.runs_path and not plan.sweep.get("force"):
        fastpath.remember(_study_command(a, study), None, study, plan.results_dir,
                          [outcome.runs_path], [(s.study, s.key) for s in plan.runs],
                          extra_roots=STUDY_SOURCES)


def cached(a: argparse.Namespace) -> dict | None:
    """A finished reproduction of exactly this command, every run, table and figure of it
    unchanged on disk (``fastpath.lookup``), or None."""
    from disco.framework import fastpath

    return fastpath.lookup(_command(a), None, SOURCES, PACKAGES)


def remember(a: argparse.Namespace, planned: dict, keys: list[tuple[str, str]],
             results_dir: Path, report: Path, outputs: list[Path], lines: list[str]) -> None:
    """Store a finished reproduction (every run ok) for ``cached``: its runs (``keys``), the
    runs tables and figures in ``outputs``, every file of the report, the lines it printed."""
    from disco.framework import fastpath

    if any(p[0].sweep.get("force") for p in planned.values()):
        return  # a forced re-run is asked for every time
    files = sorted(f for f in report.rglob("*") if f.is_file())
    fastpath.remember(_command(a), None, "reproduce", results_dir, outputs, keys, files=files,
                      extra_roots=SOURCES, packages=PACKAGES, lines=lines)


def _drawing():
    """The figure and report builders (importing them, the plotting stack, takes ~1.5 s)."""
    from plot_metric import plot
    from report import build

    return plot, build


def _default_ray() -> dict:
    import dataclasses

    from disco.framework.schema import RayConfig

    return dataclasses.asdict(RayConfig())


def start_ray_early(a: argparse.Namespace):
    """Start the private local Ray that the sweeps will share (``ray_backend.shared``) while
    the studies are planned in other processes: Ray's start (~4-6 s, about a core's worth of
    its own processes) then overlaps planning instead of following it. Only when the command
    asks for nothing but the default local Ray (no ``ray.*``, no ``sweep.serial``); the call
    that stops it again, or None. If it cannot start, the first sweep says why."""
    from disco.framework import ray_backend
    from disco.framework.compose import project_root

    keys = [o.lstrip("+~").split("=", 1)[0] for o in a.overrides]
    if any(k in ("ray", "sweep", "sweep.serial") or k.startswith("ray.") for k in keys):
        return None
    try:
        return ray_backend.prestart(_default_ray(), project_root())
    except ray_backend.RayStartError:
        return None


def keep_ray_if_planned(undo, planned: dict) -> None:
    """Stop the Ray ``start_ray_early`` started (``undo``) unless every planned sweep asks for
    exactly it: a study's own config may set ``ray.*`` or ``sweep.serial``, and a sweep that
    finds Ray up uses it as it is."""
    default = _default_ray()
    if undo is not None and any(p[0].ray != default or p[0].sweep.get("serial")
                                for p in planned.values()):
        undo()


def main(argv: list[str]) -> int:
    a = parse(argv)
    t0 = time.perf_counter()
    hit = cached(a)
    if hit is not None:
        for line in hit["lines"]:
            print(line)
        print(f"report: {Path(hit['results_dir']) / 'report' / 'index.md'} (and index.html): "
              f"nothing changed, {len(hit['keys'])} runs and {len(hit['files'])} report files "
              f"checked in {time.perf_counter() - t0:.1f} s")
        return 0
    from disco.framework import ray_backend

    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line)

    # A study whose sweep is finished and unchanged is neither planned nor read again; every
    # other is planned before any runs: a bad value is exit 2 with nothing run or written.
    done = {study: study_cached(a, study) for study in a.studies}
    todo = [s for s in a.studies if done[s] is None]

    def meanwhile():  # while the studies are planned: Ray's start, then the plotting imports
        undo = start_ray_early(a)
        _drawing()
        return undo

    rc, results_dir, outputs, keys = 0, None, [], []
    with ray_backend.shared():
        planned, undo = plan_studies(todo, a.size, a.overrides, meanwhile=meanwhile)
        if any(p is None for p in planned.values()):
            return 2
        keep_ray_if_planned(undo, planned)
        plot, build = _drawing()
        for study in a.studies:
            hit = done[study]
            if hit is not None:
                runs_path, total = Path(hit["runs_paths"][0]), len(hit["keys"])
                results_dir = Path(hit["results_dir"])
                keys += [(st, key) for st, key, _ in hit["keys"]]
                print(f"runs: {runs_path}  (0 run, {total} cached, 0 failed: the sweep is "
                      "unchanged)")
            else:
                outcome = run_study(study, planned[study])
                if outcome is None:
                    return 2
                runs_path, total = outcome.runs_path, outcome.total
                results_dir = planned[study][0].results_dir
                keys += [(s.study, s.key) for s in planned[study][0].runs]
                print(f"runs: {runs_path}  ({outcome.done} run, {outcome.skipped} cached, "
                      f"{outcome.failed} failed, {outcome.wall_s:.1f} s)")
                if outcome.failed or outcome.stopped:
                    rc = 1
                if study == "cpu_balance":
                    trace_schedule_pair(planned[study])
                remember_study(a, study, planned[study], outcome)
            lines.append(f"runs: {runs_path}  ({total} runs, all complete)")
            if runs_path:
                outputs.append(runs_path)
            if study == SMOKE and runs_path:
                smoke = plot(runs_path, "cpu_utilization", by="policy")
                outputs.append(smoke)
                say(f"figure: {smoke}")
    index, sections = build(results_dir, a.size, studies=[s for s in a.studies if s != SMOKE])
    for s in sections:
        if s.error:
            rc = 1
            print(f"{s.study}: figure FAILED\n{s.error}", file=sys.stderr)
        else:
            for path in s.finding.paths:
                say(f"figure: {path}")
            say(f"  {s.finding.title}: {s.finding.verdict} - {s.finding.measured}")
    print(f"report: {index} (and index.html) in {time.perf_counter() - t0:.1f} s")
    if rc == 0:
        remember(a, planned, keys, results_dir, index.parent, outputs, lines)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
