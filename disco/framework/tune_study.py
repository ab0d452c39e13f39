"""The ask/tell loop of ``disco tune`` and its SQLite study (``tune.py`` checks the command).

Optuna is driven by ask and tell: ``study.ask`` draws a batch of trials (stored RUNNING, their
parameters in the database at once), their configs run together as planner jobs
(``run_jobs``: the same run keys and cache as ``disco -m``, so a repeated point costs nothing),
and ``study.tell`` gives each the mean of each objective over its replicates.

The study lives in ``<results_dir>/<study>/optuna.db``. Rerunning the command resumes it: trials
a killed tuning left RUNNING are finished with their own parameters (their runs come from the
cache), then new ones are asked until ``tune.trials`` exist, so no trial is repeated or lost.
The sampler is seeded afresh before each batch from ``tune.seed`` and the number of trials so
far, so the same seed and batches give the same trials, in one go or killed and resumed.
"""

from __future__ import annotations

import fcntl
import math
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from disco.framework import tune_space
from disco.framework.compose import PlanError
from disco.framework.tune import DERIVED, Tuning

if TYPE_CHECKING:
    from optuna import Study

    from disco.framework.plan import Planner


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
