"""``disco tune``: search a policy space with Optuna instead of gridding it.

    disco tune +experiment=tune_borrowing
    disco tune 'policy.borrow_trigger_mb=int(interval(0,64))' objective=vm_runtime_mean_s

The search space is the sweep overrides of the command line (and the config's ``tune.params``),
in Hydra's grammar (``disco.framework.tune_space``); every other override is fixed, as in a
sweep. Optuna is driven by ask and tell: ``study.ask`` draws a trial's parameters and stores it
as RUNNING, the trial runs as an ordinary job of the planner (``run_jobs``: same run keys, same
cache, so a repeated point costs nothing), and ``study.tell`` records the mean of its objective
over its replicates. Trials are asked in batches, so a batch's runs go to Ray together.

The study lives in ``<results_dir>/<study>/optuna.db`` (SQLite). Rerunning the command resumes
it: trials a killed tuning left RUNNING are finished with their own parameters (their runs come
from the cache), then new ones are asked until ``tune.trials`` exist, so no trial is repeated
or lost. The sampler is seeded afresh before each batch from ``tune.seed`` and the number of
trials so far, so a tuning with the same seed and batches gives the same trials whether it ran
in one go or was killed and resumed.

Bad input (an unknown metric, directions that do not match the objectives, an empty interval,
a key not in the schema, a ``tune.*`` typo) is a ``PlanError`` before anything is written.
"""

from __future__ import annotations

import difflib
import fcntl
import math
import os
import shlex
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from disco.framework import compose, schema, tune_space
from disco.framework.compose import PlanError
from disco.framework.tune_space import Param

if TYPE_CHECKING:
    from optuna import Study

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


# --- running ------------------------------------------------------------------------------


def metric_value(name: str, row: dict[str, Any]) -> float | None:
    derived = DERIVED.get(name)
    value = derived[1](row) if derived else row.get(name)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def objective_value(name: str, rows: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """Mean over the replicates where the metric is defined, and its 95 % t half-width."""
    from disco.framework.tune_report import t_half_width

    values = [v for v in (metric_value(name, r) for r in rows) if v is not None]
    if not values:
        return None, None
    return sum(values) / len(values), t_half_width(values)


def _sampler(tuning: Tuning, trials_so_far: int) -> Any:
    """The sampler for the next batch, seeded from ``tune.seed`` and the trials so far: the same
    state of the study gives the same next trials, in one go or after a resume."""
    import numpy as np
    import optuna

    seed = int(np.random.SeedSequence([tuning.seed, trials_so_far]).generate_state(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if tuning.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        if tuning.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed,
                                                 population_size=tuning.population_size)
        return optuna.samplers.RandomSampler(seed=seed)


def _batch_size(tuning: Tuning) -> int:
    """Trials asked at once: ``tune.batch``, else 1 when serial, else enough trials to give
    every Ray CPU a run (their replicates count)."""
    if tuning.batch:
        return tuning.batch
    if tuning.serial:
        return 1
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        from disco.framework.ray_backend import cluster_cpus

        cpus = cluster_cpus()
    else:
        cpus = int(tuning.ray.get("num_cpus") or os.cpu_count() or 1)
    return max(1, math.ceil(cpus / tuning.replicates))


@contextmanager
def _locked(tuning: Tuning) -> Iterator[None]:
    """One ``disco tune`` per study at a time (an flock on the study's directory, released by
    the kernel if the process dies): two tunings of one study would finish each other's
    RUNNING trials."""
    tuning.study_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(tuning.study_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlanError(f"study={tuning.study}: another disco tune is tuning it now "
                            f"({tuning.study_dir})") from None
        yield
    finally:
        os.close(fd)


def _storage(tuning: Tuning) -> Any:
    """``optuna.db`` through SQLAlchemy, in SQLite's WAL mode with ``synchronous=NORMAL``: a
    commit (Optuna makes a dozen per trial) costs ~1 ms instead of an fsync's ~8, and the file
    stays consistent if the process is killed or the machine loses power (the last commits may
    then be lost; their trials are asked again). WAL wants the file on a local filesystem."""
    import sqlite3

    import optuna

    path = str(tuning.db)

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"creator": connect})


def open_study(tuning: Tuning) -> Study | None:
    """The study on disk, checked against this command; None if there is none yet."""
    import optuna

    if not tuning.db.exists():
        return None
    try:
        study = optuna.load_study(study_name=tuning.study, storage=_storage(tuning))
    except KeyError:
        return None
    stored = study.user_attrs.get("disco")
    mine = tuning.identity()
    if stored != mine:
        what = next((k for k in mine if (stored or {}).get(k) != mine[k]), "its format")
        raise PlanError(f"study={tuning.study}: {tuning.db} was tuned with another {what} "
                        f"({(stored or {}).get(what)!r}, now {mine.get(what)!r}); its trials "
                        "would not be comparable: give another study=, or delete the file")
    return study


def _log(tuning: Tuning, stream: TextIO, text: str) -> None:
    if tuning.progress:
        print(text, file=stream, flush=True)


def run(tuning: Tuning, planner: Planner, *, argv: list[str] | None = None,
        stream: TextIO | None = None) -> Study:
    """Run the tuning until the study has ``tune.trials`` trials; return the study."""
    import optuna

    from disco.framework import ray_backend

    stream = stream or sys.stderr
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(tuning)  # before anything is written: a mismatch is exit 2
    with _locked(tuning), ray_backend.shared():
        if study is None:
            study = optuna.create_study(study_name=tuning.study, storage=_storage(tuning),
                                        directions=tuning.directions, load_if_exists=True)
            study.set_user_attr("disco", tuning.identity())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(tuning.objectives)
            if tuning.baseline:
                study.enqueue_trial(tuning.baseline, user_attrs={"baseline": True})
        for note in tuning.notes:
            _log(tuning, stream, f"tune: {note}")
        state = optuna.trial.TrialState
        stale = study.get_trials(deepcopy=False, states=(state.RUNNING,))
        if stale:
            _log(tuning, stream, f"tune: resuming {tuning.study}: {len(stale)} trial(s) a "
                                 "stopped tuning left running are evaluated first (finished "
                                 "runs come from the cache)")
        size = _batch_size(tuning)
        where = "serially" if tuning.serial else \
            f"on Ray (ray.address={tuning.ray.get('address')})"
        _log(tuning, stream, f"tune: {tuning.study}: {tuning.trials} trials of {tuning.replicates}"
                             f" run(s) each, {tuning.sampler} (seed {tuning.seed}), batches of "
                             f"{size} {where}; study {tuning.db}")
        for i in range(0, len(stale), size):
            _evaluate(tuning, planner, study, [(t.number, t._trial_id, dict(t.params))
                                               for t in stale[i:i + size]], argv, stream)
        distributions = {n: p.distribution for n, p in tuning.space.items()}
        while True:
            done = sum(1 for t in study.get_trials(deepcopy=False) if t.state != state.WAITING)
            left = tuning.trials - done
            if left <= 0:
                break
            study.sampler = _sampler(tuning, done)
            batch = []
            for _ in range(min(left, _batch_size(tuning))):
                trial = study.ask(distributions)
                batch.append((trial.number, trial._trial_id, dict(trial.params)))
            _evaluate(tuning, planner, study, batch, argv, stream)
    return study


def _evaluate(tuning: Tuning, planner: Planner, study: Study,
              batch: list[tuple[int, int, dict[str, Any]]], argv: list[str] | None,
              stream: TextIO) -> None:
    """Run a batch of RUNNING trials as one set of jobs, then tell each its values."""
    import optuna

    from disco.framework.sweep import run_jobs

    started = datetime.now(UTC)
    planned = []
    for number, trial_id, params in batch:
        trial = optuna.trial.Trial(study, trial_id)
        if set(params) != set(tuning.space):  # killed while its parameters were drawn
            _fail(tuning, study, number, "stopped while its parameters were being drawn",
                  stream)
            continue
        job = [*tuning.overrides(params), "sweep.progress=false"]
        try:
            keys = [s.key for s in planner.plan_jobs([job]).runs]
        except _config_errors() as exc:  # a cross-field rule inside the space
            trial.set_user_attr("command", tuning.command(params))
            _fail(tuning, study, number, f"invalid config: {str(exc).splitlines()[0]}", stream)
            continue
        planned.append((number, trial, params, job, keys))
    if not planned:
        return
    _, outcome = run_jobs([p[3] for p in planned], planner=planner, gather=False, argv=argv,
                          stream=stream)
    rows = {r["key"]: r for r in outcome.rows}
    for number, trial, params, _, keys in planned:
        runs = [rows.get(k) for k in keys]
        cached = sum(1 for r in runs if r is not None and r.get("ended_at") is not None
                     and r["ended_at"] < started)
        trial.set_user_attr("command", tuning.command(params))
        trial.set_user_attr("runs", len(keys))
        trial.set_user_attr("cached", cached)
        trial.set_user_attr("keys", keys)
        bad = [r for r in runs if r is None or r.get("status") != "ok"]
        if bad:
            _fail(tuning, study, number, f"{len(bad)} of its {len(keys)} runs failed (see "
                                         "their error.txt)", stream)
            continue
        values, halves = zip(*(objective_value(n, runs) for n in tuning.objectives),
                             strict=True)
        missing = [n for n, v in zip(tuning.objectives, values, strict=True) if v is None]
        if missing:
            _fail(tuning, study, number, f"{missing[0]} is undefined in every replicate",
                  stream)
            continue
        for name, half in zip(tuning.objectives, halves, strict=True):
            trial.set_user_attr(f"ci95:{name}", half)
        study.tell(number, list(values))
        shown = ", ".join(f"{n} {v:.6g}" for n, v in zip(tuning.objectives, values, strict=True))
        runs_text = f"{len(keys)} run{'s' if len(keys) > 1 else ''}, {cached} cached"
        _log(tuning, stream, f"[{number + 1}/{tuning.trials}] trial {number} ({runs_text}) "
                             f"{_params_text(tuning, params)} -> {shown}{_best_text(study)}")


def _params_text(tuning: Tuning, params: dict[str, Any]) -> str:
    return " ".join(p.override(tune_space.snap(p, params[n])) for n, p in tuning.space.items())


def _best_text(study: Study) -> str:
    if len(study.directions) > 1:
        return f" | front: {len(study.best_trials)} trials"
    best = study.best_trial
    return f" | best {best.value:.6g} (trial {best.number})"


def _fail(tuning: Tuning, study: Study, number: int, why: str, stream: TextIO) -> None:
    import optuna

    study.tell(number, state=optuna.trial.TrialState.FAIL)
    print(f"[{number + 1}/{tuning.trials}] trial {number} failed: {why}", file=stream,
          flush=True)


def _config_errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return ValueError, HydraException, OmegaConfBaseException  # ConfigError, PlanError too
