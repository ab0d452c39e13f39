"""One-at-a-time studies (the knob sensitivity): one ordinary sweep per knob, run together.

    python experiments/reproduce.py sensitivity [--size full] [override ...]

``plan_knobs`` plans, ``run`` runs; ``reproduce.py`` calls both.

``conf/experiment/sensitivity.yaml`` holds the table: scenarios (Hydra overrides) and knobs,
each varied one at a time from its ``from`` value to its ``to`` value on one scenario, with the
expected direction of a metric. The planner only knows products of values, so each knob is
planned as its own sweep, ``+experiment=sensitivity <scenario> <knob>=<from>,<to> ~sensitivity``
(the same seeds for both values: common random numbers); the runs of all knobs are then run as
one batch on the shared Ray (a run that two knobs share, such as a scenario's baseline, is run
once: the framework keys runs by their config). ``<results_dir>/<study>/runs.parquet`` gets
one row per (knob, run) with the knob's labels (``knob_id``, ``knob``, ``scenario``,
``metric``, ``expect``, ``side``: from / to, ``value``, ``dead_below``) beside the run's
metrics; analysis/sensitivity.py turns it into the table and the tornado figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIDES = ("from", "to")
REQUIRED = ("knob", "from", "to", "scenario", "metric", "expect")
EXPECT = ("up", "down", "change")


@dataclass(frozen=True, slots=True)
class Knob:
    """One line of the table."""

    knob: str  # a Hydra override key: a dotted value (policy.gang) or a group (cells)
    src: Any  # the baseline value
    dst: Any  # the value it is moved to
    scenario: str
    metric: str
    expect: str  # up | down | change

    @property
    def id(self) -> str:
        """Unique within a table: the same knob may be checked on two scenarios or metrics."""
        return f"{self.knob} @ {self.scenario} ({self.metric})"

    def sweep(self) -> str:
        return f"{self.knob}={value_text(self.src)},{value_text(self.dst)}"


def value_text(value: Any) -> str:
    """A YAML value as Hydra override text, and the form compared with a run's column."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        x = float(value)
        return str(int(x)) if math.isfinite(x) and x == int(x) else repr(x)
    return str(value)


@dataclass(frozen=True, slots=True)
class Scenario:
    overrides: list[str]  # Hydra overrides on top of the experiment
    seeds: int = 1  # runs sim.replicates x seeds replicates (for noisy scenarios)


@dataclass(frozen=True, slots=True)
class Table:
    study: str
    replicates: int  # sim.replicates of the composed experiment
    dead_below: float
    scenarios: dict[str, Scenario]
    knobs: list[Knob]


def read_table(experiment: str, overrides: list[str]) -> Table:
    """The study's ``sensitivity`` table, composed as Hydra composes it (overrides apply);
    a malformed entry is a PlanError naming it (exit 2, before anything runs)."""
    from disco.framework.compose import compose_dictconfig, to_container
    from disco.framework.plan import PlanError

    data = to_container(compose_dictconfig([f"+experiment={experiment}", *overrides]))
    spec = data.get("sensitivity") or {}
    if not spec.get("knobs"):
        raise PlanError(f"experiment '{experiment}' has no sensitivity.knobs")
    replicates = int(data["sim"]["replicates"])
    scenarios = {}
    for name, sc in (spec.get("scenarios") or {}).items():
        where = f"sensitivity.scenarios.{name}"
        ovs, seeds = (sc, 1) if isinstance(sc, list) else (
            (sc.get("overrides"), sc.get("seeds", 1)) if isinstance(sc, dict) else (None, 1))
        if (not isinstance(ovs, list) or not all(isinstance(o, str) for o in ovs)
                or (isinstance(sc, dict) and set(sc) - {"overrides", "seeds"})):
            raise PlanError(f"{where}: expected a list of overrides or {{overrides: [...], "
                            f"seeds: k}}, got {sc!r}")
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise PlanError(f"{where}.seeds: {seeds!r}, expected a whole number >= 1 "
                            "(a multiple of sim.replicates)")
        scenarios[str(name)] = Scenario(list(ovs), seeds)
    knobs: list[Knob] = []
    for i, entry in enumerate(spec["knobs"]):
        where = f"sensitivity.knobs.{i}"
        if not isinstance(entry, dict):
            raise PlanError(f"{where}: expected a mapping, got {entry!r}")
        missing = [k for k in REQUIRED if k not in entry]
        extra = sorted(set(entry) - set(REQUIRED))
        if missing or extra:
            raise PlanError(f"{where}: " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"unknown key {', '.join(extra)}"] if extra else [])))
        if entry["expect"] not in EXPECT:
            raise PlanError(f"{where}.expect: {entry['expect']!r}, expected one of "
                            f"{', '.join(EXPECT)}")
        if entry["scenario"] not in scenarios:
            raise PlanError(f"{where}.scenario: {entry['scenario']!r} is not in "
                            f"sensitivity.scenarios ({', '.join(scenarios)})")
        if value_text(entry["from"]) == value_text(entry["to"]):
            raise PlanError(f"{where}: from and to are the same ({entry['from']!r})")
        knob = Knob(str(entry["knob"]), entry["from"], entry["to"], str(entry["scenario"]),
                    str(entry["metric"]), str(entry["expect"]))
        if knob.id in {k.id for k in knobs}:
            raise PlanError(f"{where}: {knob.id} is already in the table")
        knobs.append(knob)
    return Table(study=str(data.get("study")), replicates=replicates,
                 dead_below=float(spec.get("dead_below", 0.01)), scenarios=scenarios, knobs=knobs)


@dataclass(slots=True)
class KnobPlans:
    table: Table
    plans: list[tuple[Knob, Any]]  # (knob, its sweep's Plan)
    merged: Any  # one Plan with the union of their runs, each run once, in table order


def plan_knobs(experiment: str, overrides: list[str], argv: list[str] | None = None
               ) -> KnobPlans:
    """Every knob's sweep planned (a ConfigError or PlanError names a bad entry before
    anything runs), and the merged plan."""
    from disco.framework.plan import Plan, Planner

    table = read_table(experiment, overrides)
    planner = Planner()  # one planner: its compositions are shared by every knob's sweep
    plans = []
    for k in table.knobs:
        # A scenario's extra seeds come after the command line's own sim.replicates (they
        # multiply it); the table itself (and any override of it) is dropped last: it is not
        # part of a run.
        sc = table.scenarios[k.scenario]
        more = [f"sim.replicates={table.replicates * sc.seeds}"] if sc.seeds > 1 else []
        args = [f"+experiment={experiment}", *sc.overrides, k.sweep(), *overrides, *more,
                "~sensitivity"]
        plans.append((k, planner.plan(args)))
    first = plans[0][1]
    merged = Plan(results_dir=first.results_dir, sweep=first.sweep, ray=first.ray,
                  code_version=first.code_version, studies=list(first.studies),
                  search=first.search, groups=first.groups)
    seen: set[str] = set()
    for _, plan in plans:
        for spec in plan.runs:
            if spec.key not in seen:
                seen.add(spec.key)
                merged.runs.append(spec)
    return KnobPlans(table, plans, merged)


def side_of(knob: Knob, columns: dict[str, Any]) -> str:
    """Which of the knob's two values a run of its sweep has (from its run columns)."""
    got = value_text(columns.get(knob.knob))
    for side, value in zip(SIDES, (knob.src, knob.dst), strict=True):
        if got == value_text(value):
            return side
    raise ValueError(f"{knob.id}: a run has {knob.knob}={got}, neither "
                     f"{value_text(knob.src)} nor {value_text(knob.dst)}")


def labels(plans, dead_below: float) -> list[dict[str, Any]]:
    """One label row per (knob, run): which knob, scenario, metric, expectation and side, and
    the table's ``dead_below``."""
    out = []
    for k, plan in plans:
        for spec in plan.runs:
            side = side_of(k, spec.columns)
            out.append({"key": spec.key, "knob_id": k.id, "knob": k.knob,
                        "scenario": k.scenario, "metric": k.metric, "expect": k.expect,
                        "side": side, "value": value_text(k.src if side == "from" else k.dst),
                        "dead_below": dead_below})
    return out


def write_runs(rows: list[dict[str, Any]], label_rows: list[dict[str, Any]],
               path: Path) -> Path:
    """The labelled table: each label row joined with its run's metrics row (a run that did
    not complete has no row, so its labels are left out)."""
    from disco.framework.results import gather

    by_key = {r["key"]: r for r in rows}
    return gather([{**by_key[lab["key"]], **lab} for lab in label_rows if lab["key"] in by_key],
                  path)


def run(knobs: KnobPlans, argv: list[str] | None = None):
    """Run the merged plan as one sweep and write the labelled runs.parquet; the outcome."""
    from disco.framework.results import RUNS
    from disco.framework.sweep import run_sweep

    outcome = run_sweep(knobs.merged, argv=argv, gather=False)
    outcome.runs_path = write_runs(outcome.rows, labels(knobs.plans, knobs.table.dead_below),
                                   knobs.merged.study_dir / RUNS)
    return outcome
