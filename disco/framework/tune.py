"""``disco tune``: search a policy space with Optuna instead of gridding it; this module checks
the command (``prepare``), ``tune_study`` runs it (``run``).

    disco tune +experiment=tune_borrowing
    disco tune 'policy.borrow_trigger_mb=int(interval(0,64))' objective=vm_runtime_mean_s

The search space is the sweep overrides of the command line plus the config's own
(``sweep.params`` as choices, ``tune.params``), in Hydra's grammar (``tune_space``); every other
override is fixed, as in a sweep. Everything is checked before anything is written: an unknown
metric, directions that do not match the objectives, an empty interval, a key not in the schema
(every corner of the space is planned), a ``tune.*`` typo: a ``PlanError`` (exit 2).
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disco.framework import compose, schema, tune_space
from disco.framework.compose import PlanError
from disco.framework.tune_space import Param

if TYPE_CHECKING:

    from disco.framework.plan import Planner

DB = "optuna.db"
OUT = "tune"  # <study>/tune/: the trials table, the summary and the figures
SAMPLERS = ("auto", "tpe", "nsga2", "random")
DIRECTIONS = ("minimize", "maximize")
PROBE_S = 0.1  # simulated seconds of the in-memory run that lists a task's metrics


def _lost_per_fault(row: dict[str, Any]) -> float | None:
    hit = (row.get("faults_injected") or 0) - (row.get("faults_ignored") or 0)
    return row["vms_lost"] / hit if hit > 0 and row.get("vms_lost") is not None else None


# Metrics a trial can optimise beyond the task's own: name -> (the metrics it needs, value).
# vms_lost_per_fault is analysis/sensitivity.py's: VMs lost per fault that hit a live part.
DERIVED = {"vms_lost_per_fault": (("vms_lost", "faults_injected", "faults_ignored"),
                                  _lost_per_fault)}


@dataclass(slots=True)
class Tuning:
    """A validated ``disco tune`` command: what to vary, what to optimise, where it is stored."""

    study: str
    results_dir: Path
    fixed: list[str]  # the fixed overrides that make a config (tune keys left out)
    space: dict[str, Param]
    objectives: list[str]
    directions: list[str]
    trials: int
    sampler: str  # tpe | nsga2 | random
    seed: int
    batch: int | None
    population_size: int
    baseline: dict[str, Any]  # trial 0's parameters: the config's own values inside the space
    figures: bool
    progress: bool
    replicates: int
    serial: bool
    ray: dict[str, Any]
    task: str
    code_version: str
    notes: list[str] = field(default_factory=list)

    @property
    def study_dir(self) -> Path:
        return self.results_dir / self.study

    @property
    def db(self) -> Path:
        return self.study_dir / DB

    @property
    def out_dir(self) -> Path:
        return self.study_dir / OUT

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The fixed overrides plus one per tuned key: the trial's config, as ``disco`` takes."""
        return [*self.fixed, *(p.override(tune_space.snap(p, params[n]))
                               for n, p in self.space.items())]

    def command(self, params: dict[str, Any]) -> str:
        """A command line that runs this trial's config (and finds its runs in the cache)."""
        return shlex.join(["disco", *self.overrides(params)])

    def identity(self) -> dict[str, Any]:
        """What a resumed study must share with the one on disk: the overrides that make its
        configs, the space, the objectives, the task and the simulator's code. The rest
        (trials, sampler, seed, batch, where the runs go: ray.*, sweep.*, results_dir) may
        change from one invocation to the next."""
        fixed = [o for o in self.fixed
                 if not o.lstrip("+~").startswith(("ray.", "results_dir=", "sweep."))]
        return {"fixed": fixed, "space": {n: p.text for n, p in self.space.items()},
                "objectives": self.objectives, "directions": self.directions,
                "task": self.task, "code_version": self.code_version}


def _shown(value: Any) -> str:
    """A value as the user typed it: ``[a,b]``, not ``['a', 'b']``."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    return str(value)


def _names(value: Any, key: str) -> list[str]:
    items = value if isinstance(value, list | tuple) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise PlanError(f"{key}={_shown(value)}: expected a name or a list of names "
                        f"({key}=[a,b])")
    return list(items)


def prepare(overrides: Sequence[str], config_dirs: Sequence[str | Path] = ()
            ) -> tuple[Tuning, Planner]:
    """Parse and check a ``disco tune`` command line; nothing is written. Raises PlanError,
    ConfigError or Hydra's errors (exit 2)."""
    from disco.framework.plan import Planner, _flatten, _norm, _param_str, _select

    planner = Planner(config_dirs)
    planner.tuning = True
    overrides = list(overrides)
    compose.reject_hydra(overrides)
    overrides = compose.apply_size(overrides, planner.search)
    parsed = planner.parse(overrides)
    fixed = [t for t, ov in zip(overrides, parsed, strict=True) if not ov.is_sweep_override()]
    cli_space = [t for t, ov in zip(overrides, parsed, strict=True) if ov.is_sweep_override()]
    groups, values = planner.split(fixed)
    data = planner.resolve(tuple(groups), values)
    _, fw = schema.split_framework(data)
    given = {_norm(ov.key_or_group) for ov in planner.parse(fixed)}
    cli_names = {_norm(ov.key_or_group) for ov in planner.parse(cli_space)}
    # The study's grid (sweep.params, a,b,c: a choice), then its tune.params, then the command
    # line: a later entry for the same key wins, and a fixed value on the command line fixes it.
    config_space: dict[str, str] = {}
    for section in ("sweep", "tune"):
        for k, v in _flatten((fw.get(section) or {}).get("params") or {}).items():
            text = f"{k}={_param_str(v)}"
            if not planner.parse([text])[0].is_sweep_override():
                raise PlanError(f"{section}.params: {text} is not a search space "
                                "(interval(a,b), int(interval(a,b)), tag(log, interval(a,b)), "
                                "choice(...), a,b,c, range(...)); a fixed value is an ordinary "
                                "override")
            config_space.pop(_norm(k), None)
            config_space[_norm(k)] = text
    from_config = [t for k, t in config_space.items() if k not in given | cli_names]
    space = tune_space.parse(from_config + cli_space, planner)
    if not space:
        raise PlanError("nothing to tune: give a search space (key=interval(a,b), "
                        "key=int(interval(a,b)), key=choice(x,y), key=range(a,b), ...) on the "
                        "command line or in tune.params")
    tune = fw["tune"]
    objectives, directions = _objectives(fw)
    trials = int(tune["trials"])
    if trials < 1:
        raise PlanError(f"tune.trials={trials}: must be >= 1")
    if tune["sampler"] not in SAMPLERS:
        raise PlanError(f"tune.sampler={tune['sampler']}: expected one of {', '.join(SAMPLERS)}")
    if tune["batch"] is not None and tune["batch"] < 1:
        raise PlanError(f"tune.batch={tune['batch']}: must be >= 1 (or null)")
    pop = tune["population_size"]
    if pop is not None and pop < 2:
        raise PlanError(f"tune.population_size={pop}: must be >= 2 (or null)")
    sampler = tune["sampler"] if tune["sampler"] != "auto" else (
        "nsga2" if len(objectives) > 1 else "tpe")
    tuning = Tuning(
        study=str(fw["study"]), results_dir=Path(fw["results_dir"]).expanduser().resolve(),
        fixed=[t for t in fixed if _norm(planner.parse([t])[0].key_or_group).split(".")[0]
               not in schema.TUNE_KEYS],
        space=space, objectives=objectives, directions=directions, trials=trials,
        sampler=sampler, seed=int(tune["seed"]), batch=tune["batch"],
        population_size=int(pop) if pop else max(4, min(50, trials // 4)), baseline={},
        figures=bool(tune["figures"]), progress=bool(fw["sweep"].get("progress", True)),
        replicates=1, serial=False, ray=fw["ray"], task=fw["sweep"]["task"], code_version="")
    probe = _probe(tuning, planner)
    tuning.replicates = len(probe.runs)
    tuning.code_version = probe.code_version
    from disco.framework import ray_backend

    tuning.serial = bool(probe.sweep.get("serial")) or ray_backend.is_serial(probe.ray)
    _check_metrics(tuning, probe.runs[0].config)
    if tune["baseline"]:
        choices = planner.base(tuple(groups)).choices
        for name, p in space.items():
            value = choices.get(name) if p.group else _select(data, name)
            value = tune_space.coerce(p.distribution, value)
            if value is None:
                tuning.notes.append(f"baseline: the config's {name} is not a point of "
                                    f"{tune_space.describe(p.distribution)}, so trial 0 draws it")
            else:
                tuning.baseline[name] = value
    if not tuning.serial and str(tuning.ray.get("address") or "local") != "local":
        address, origin = ray_backend.resolve_address(str(tuning.ray["address"]))
        ray_backend.probe(address, origin)  # an unreachable cluster: exit 2, nothing written
    return tuning, planner


def _objectives(fw: dict[str, Any]) -> tuple[list[str], list[str]]:
    if fw.get("objective") is None:
        raise PlanError("objective= is required: the metric to optimise "
                        "(objective=vm_runtime_mean_s), or a list of them for a Pareto front "
                        "(objective=[vm_runtime_mean_s,vms_lost_per_fault])")
    objectives = _names(fw["objective"], "objective")
    if len(set(objectives)) != len(objectives):
        raise PlanError(f"objective={_shown(fw['objective'])}: a metric is listed twice")
    if fw.get("direction") is None:
        directions = ["minimize"] * len(objectives)
    else:
        directions = _names(fw["direction"], "direction")
        bad = [d for d in directions if d not in DIRECTIONS]
        if bad:
            raise PlanError(f"direction={_shown(fw['direction'])}: {bad[0]} is not one of "
                            f"{', '.join(DIRECTIONS)}")
        if len(directions) != len(objectives):
            raise PlanError(f"direction={_shown(fw['direction'])}: {len(directions)} "
                            f"direction(s) for {len(objectives)} objective(s) "
                            f"({', '.join(objectives)}): give one per objective, in order")
    return objectives, directions


def _probe(tuning: Tuning, planner: Planner) -> Any:
    """Plan the space's corners (each key at its low end, at its high end, each option of a
    choice): a key the schema does not have, a value out of its range or a config group option
    that does not exist is an error now, not in trial 37."""
    from disco.config import ConfigError

    first = None
    for point in tune_space.corners(tuning.space):
        job = tuning.overrides(point)
        try:
            plan = planner.plan_jobs([job])
        except ConfigError as exc:
            where = " ".join(o for o in job if o not in tuning.fixed)
            raise PlanError(f"{exc} (at the point {where} of the search space: every corner "
                            "of the space must be a valid config)") from None
        studies = {s.study for s in plan.runs}
        if studies != {tuning.study}:
            raise PlanError(f"study={tuning.study}: a tuning writes one study, but the search "
                            f"space moves it ({', '.join(sorted(studies))})")
        first = first or plan
    assert first is not None
    return first


def _check_metrics(tuning: Tuning, config: dict[str, Any]) -> None:
    """Each objective must be a metric of the task: run the task once, in memory, for a
    tenth of a simulated second (every run of a task reports the same metric names)."""
    import copy

    from disco.config import SimConfig
    from disco.framework.execute import load_task

    cfg = copy.deepcopy(config)
    cfg["sim"]["duration_s"] = min(float(cfg["sim"]["duration_s"]), PROBE_S)
    try:
        result = load_task(tuning.task)(SimConfig.from_dict(cfg))
    except Exception as exc:
        raise PlanError(f"sweep.task={tuning.task}: its probe run (to list its metrics) "
                        f"failed: {type(exc).__name__}: {exc}") from exc
    names = {k for k, v in result.metrics.items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
    names |= {d for d, (needs, _) in DERIVED.items() if set(needs) <= names}
    for name in tuning.objectives:
        if name not in names:
            close = difflib.get_close_matches(name, sorted(names), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise PlanError(f"objective={name}: not a metric of {tuning.task} ({hint}its "
                            f"metrics: {', '.join(sorted(names))})")
