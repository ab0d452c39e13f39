"""``disco tune``: the search space in Hydra's grammar, Optuna's ask/tell over planner jobs, the
SQLite study that resumes, and the bad input that writes nothing.

The tunings here use ``framework_helpers.tasks:bowl``, a task whose metrics are known functions
of ``policy.periodic_period_ms`` (x) and ``policy.periodic_threshold`` (y), with no simulation:
``loss = (x - 40)^2``, ``period = x``, ``spread = (100 - x) + y``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time

import optuna
import polars as pl
import pytest
from framework_helpers.common import ROOT, env

from disco.cli import main
from disco.framework.compose import PlanError
from disco.framework.plan import Planner
from disco.framework.tune_space import format_value, parse

BOWL = ["sweep.task=framework_helpers.tasks:bowl", "ray.address=none", "tune.figures=false"]
PERIOD = "policy.periodic_period_ms=interval(1,100)"


@pytest.fixture(autouse=True)
def _private_sweep_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DISCO_CACHE_DIR", str(tmp_path_factory.mktemp("sweep_cache")))


@pytest.fixture(scope="module")
def planner():
    return Planner()


def trials(results, study="default"):
    return optuna.load_study(study_name=study,
                             storage=f"sqlite:///{results / study / 'optuna.db'}").trials


@pytest.mark.parametrize(("text", "kind", "expected"), [
    ("policy.x=interval(0,128)", "FloatDistribution", {"low": 0.0, "high": 128.0, "log": False}),
    ("policy.x=int(interval(0,128))", "IntDistribution", {"low": 0, "high": 128, "log": False}),
    ("policy.x=tag(log,interval(1,100))", "FloatDistribution", {"low": 1.0, "high": 100.0,
                                                                "log": True}),
    ("policy.x=tag(log,int(interval(1,64)))", "IntDistribution", {"low": 1, "high": 64,
                                                                  "log": True}),
    ("policy.x=choice(1,2.5,fast)", "CategoricalDistribution", {"choices": (1, 2.5, "fast")}),
    ("policy.x=true,false", "CategoricalDistribution", {"choices": (True, False)}),
    ("policy=choice(cellular_disco,gang_off)", "CategoricalDistribution",
     {"choices": ("cellular_disco", "gang_off")}),
    ("cells=glob(cells_1*)", "CategoricalDistribution", {"choices": ("cells_1", "cells_16")}),
    # Hydra's range: the stop is excluded, as in `disco -m`
    ("policy.x=range(4,20,4)", "IntDistribution", {"low": 4, "high": 16, "step": 4}),
    ("policy.x=range(10,0,-3)", "IntDistribution", {"low": 1, "high": 10, "step": 3}),
    ("policy.x=range(0.5,2.5,0.5)", "FloatDistribution", {"low": 0.5, "high": 2.0, "step": 0.5}),
])
def test_each_grammar_form_becomes_its_optuna_distribution(planner, text, kind, expected):
    (param,) = parse([text], planner).values()
    assert type(param.distribution).__name__ == kind
    for attr, value in expected.items():
        assert getattr(param.distribution, attr) == value
    assert param.group == (text.split("=")[0] in ("policy", "cells"))


@pytest.mark.parametrize(("text", "message"), [
    ("policy.x=interval(5,5)", "empty interval"),
    ("policy.x=interval(9,1)", "inverted interval"),
    ("policy.x=int(interval(1.2,1.7))", "empty interval"),  # int() truncates both to 1
    ("policy.x=tag(log,interval(0,8))", "log interval needs low > 0"),
    ("policy.x=tag(lin,interval(1,8))", "unknown tag lin"),
    ("policy.x=tag(log,choice(1,2))", "applies to interval() only"),
    ("policy.x=shuffle(range(1,5))", "shuffle() means nothing"),
    ("policy.x=range(5,5)", "empty range"),
    ("policy.x=choice(1,1)", "lists a value twice"),
    ("policy=interval(0,1)", "policy is a config group"),
    ("policy.x=glob(*)", "glob() selects options of a config group"),
    ("cells=glob(nothing*)", "matches no option"),
])
def test_a_space_the_tuner_cannot_honour_is_an_error_naming_it(planner, text, message):
    with pytest.raises(PlanError, match=re.escape(message)) as info:
        parse([text], planner)
    assert str(info.value).startswith(text)


@pytest.mark.parametrize("value", [7, -3, 0.1, 1e-05, 0.30000000000000004, True, "a b", "1",
                                   "it's", "x=y", "a,b", "true"])
def test_a_trial_value_becomes_an_override_that_gives_it_back(planner, value):
    parsed = planner.parser.parse_override(f"k={format_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


def test_a_tiny_tuning_beats_its_first_trial_and_leaves_its_table_and_figures(tmp_path,
                                                                              capsys):
    # trial 0 is the config's own 100 ms: the worst point of the bowl on [1, 100]
    args = ["tune", PERIOD, *BOWL, "objective=loss", "tune.trials=4", "tune.figures=true",
            f"results_dir={tmp_path}"]
    assert main(args) == 0
    out = capsys.readouterr()
    done = trials(tmp_path)
    assert [t.state.name for t in done] == ["COMPLETE"] * 4
    assert done[0].params == {"policy.periodic_period_ms": 100.0} and done[0].value == 3600
    best = min(done, key=lambda t: t.value)
    assert best.value < done[0].value
    assert f"best trial: {best.number}" in out.out
    assert "[4/4] trial 3" in out.err
    table = pl.read_parquet(tmp_path / "default" / "tune" / "trials.parquet")
    assert table["loss"].to_list() == [t.value for t in done]
    assert table.filter(pl.col("best"))["trial"].to_list() == [best.number]
    for name in ("summary.txt", "history.png", "importances.png"):
        assert (tmp_path / "default" / "tune" / name).stat().st_size > 0
    # the printed command is a plain `disco` run of the best config, answered from the cache
    command = next(line.split(": ", 1)[1] for line in out.out.splitlines()
                   if line.strip().startswith(f"trial {best.number}: disco "))
    assert main(shlex.split(command)[1:]) == 0
    assert "0 done, 1 skipped (already complete)" in capsys.readouterr().err


def test_repeated_trials_cost_nothing(tmp_path):
    args = ["tune", "policy.periodic_period_ms=choice(20,40,60)", *BOWL, "objective=loss",
            "tune.trials=8", "sim.replicates=2", f"results_dir={tmp_path}"]
    assert main(args) == 0
    done = trials(tmp_path)
    assert len(done) == 8 and all(t.state.name == "COMPLETE" for t in done)
    distinct = {t.params["policy.periodic_period_ms"] for t in done}
    runs = list((tmp_path / "default" / "runs").glob("*/metrics.parquet"))
    assert len(runs) == 2 * len(distinct) <= 6  # one run per distinct config and replicate
    assert sum(t.user_attrs["cached"] for t in done) == 2 * (8 - len(distinct))


def test_a_killed_tuning_resumes_with_no_duplicate_trial_and_reuses_finished_runs(tmp_path):
    n = 6
    args = ["tune", PERIOD, "sweep.task=framework_helpers.tasks:slow_bowl", "ray.address=none",
            "tune.figures=false", "objective=loss", f"tune.trials={n}", "sim.replicates=2"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "disco.cli", *args, f"results_dir={killed}"],
                            cwd=ROOT, env={**env(), "DISCO_TEST_SLEEP_S": "0.4"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = killed / "default" / "runs"
    deadline = time.monotonic() + 60
    while len(list(runs.glob("*/manifest.json"))) < 5:  # trials 0, 1 and half of trial 2
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/manifest.json")}
    assert len(before) == 5
    left = trials(killed)
    assert [t.state.name for t in left] == ["COMPLETE", "COMPLETE", "RUNNING"]

    assert main([*args, f"results_dir={killed}"]) == 0
    resumed = trials(killed)
    assert [t.number for t in resumed] == list(range(n))
    assert all(t.state.name == "COMPLETE" for t in resumed)
    assert resumed[2].params == left[2].params  # the trial in flight, finished as it was
    assert resumed[2].user_attrs["cached"] == 1  # its first replicate had finished
    assert all(p.stat().st_mtime_ns == m for p, m in before.items())  # nothing re-ran
    assert len(list(runs.glob("*/manifest.json"))) == 2 * n

    # the same seed, in one go: the same trials (the sampler is reseeded per batch)
    whole = tmp_path / "whole"
    assert main([*args, f"results_dir={whole}"]) == 0
    assert [(t.params, t.values) for t in trials(whole)] == \
        [(t.params, t.values) for t in resumed]


def test_several_objectives_give_a_non_dominated_front(tmp_path, capsys):
    args = ["tune", PERIOD, "policy.periodic_threshold=interval(0,10)", *BOWL,
            "objective=[period,spread]", "direction=[minimize,minimize]", "tune.trials=12",
            "tune.population_size=4", f"results_dir={tmp_path}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Pareto front:" in out and "sampler nsga2" in out  # auto: NSGA-II for several
    table = pl.read_parquet(tmp_path / "default" / "tune" / "trials.parquet")
    points = [(r["period"], r["spread"], r["best"]) for r in table.iter_rows(named=True)]

    def dominates(a, b):
        return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])

    front = [p for p in points if p[2]]
    assert front
    assert not any(dominates(q, p) for p in front for q in points)
    assert all(any(dominates(f, p) or f[:2] == p[:2] for f in front)
               for p in points if not p[2])


@pytest.mark.parametrize(("extra", "message"), [
    (["objective=lossy"], "objective=lossy: not a metric of framework_helpers.tasks:bowl "
                          "(did you mean loss?"),
    (["objective=loss", "direction=[minimize,maximize]"], "2 direction(s) for 1 objective"),
    (["objective=[loss,period]", "direction=minimize"], "1 direction(s) for 2 objective"),
    (["objective=loss", "direction=smaller"], "smaller is not one of minimize, maximize"),
    (["objective=loss", "tune.trails=3"], "tune.trails"),
    (["objective=loss", "tune.sampler=cmaes"], "tune.sampler=cmaes"),
    (["objective=loss", "tune.trials=0"], "tune.trials=0"),
    ([], "objective= is required"),
    (["objective=loss", "policy.nope=interval(1,2)"], "policy.nope"),
    (["objective=loss", "policy.periodic_threshold=interval(3,1)"], "inverted interval"),
    (["objective=loss", "policy.periodic_threshold=interval(-1,1)"],
     "policy.periodic_threshold=-1.0"),
    (["objective=loss", "+tune.params.policy.gang=true"], "is not a search space"),
])
def test_bad_input_exits_2_naming_it_and_writes_nothing(tmp_path, capsys, extra, message):
    assert main(["tune", PERIOD, *BOWL, *extra, f"results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disco tune: error: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_a_study_resumed_with_another_objective_is_refused(tmp_path, capsys):
    args = ["tune", PERIOD, *BOWL, "tune.trials=2", f"results_dir={tmp_path}"]
    assert main([*args, "objective=loss"]) == 0
    db = tmp_path / "default" / "optuna.db"
    stamp = db.stat().st_mtime_ns
    assert main([*args, "objective=period"]) == 2
    assert "was tuned with another objectives" in capsys.readouterr().err
    assert db.stat().st_mtime_ns == stamp
    assert main([*args, "objective=loss", "tune.trials=3"]) == 0  # more trials: fine
    assert len(trials(tmp_path)) == 3


def test_plain_disco_refuses_tune_keys_and_a_study_with_an_open_search_space(tmp_path, capsys):
    assert main(["objective=loss", f"results_dir={tmp_path}"]) == 2
    assert "read by `disco tune` only" in capsys.readouterr().err
    assert main(["-m", "+experiment=tune_borrowing", f"results_dir={tmp_path}"]) == 2
    assert "run it with `disco tune`" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    fixed = ["policy.borrow_trigger_mb=8", "policy.borrow_unit_mb=4", "policy.lend_floor_mb=64"]
    assert main(["--dry-run", "+experiment=tune_borrowing", *fixed]) == 0  # nothing left open


def test_the_space_merges_the_studys_grid_its_tune_params_and_the_command_line():
    from disco.framework import tune

    def space(*extra):
        tuning, _ = tune.prepare(["objective=vm_runtime_mean_s", *extra])
        return {n: type(p.distribution).__name__[:3] for n, p in tuning.space.items()}

    # a grid study's sweep.params are choices, as Hydra's Optuna sweeper reads its params
    assert space("+experiment=memory_borrowing") == {
        "machine.memory_per_node_mb": "Cat", "policy.borrow_policy": "Cat",
        "policy.borrow_trigger_mb": "Cat", "policy.loan_mb_per_s": "Cat"}
    # the command line replaces an entry with a search space, or fixes it with a value
    assert space("+experiment=memory_borrowing", "policy.borrow_trigger_mb=int(interval(0,32))",
                 "policy.borrow_policy=paper") == {"machine.memory_per_node_mb": "Cat",
                                                   "policy.borrow_trigger_mb": "Int",
                                                   "policy.loan_mb_per_s": "Cat"}
    assert space("+experiment=tune_borrowing", "tune.params=null", "policy.gang=true,false",
                 "direction=null") == {"policy.gang": "Cat"}


def test_dry_run_lists_the_space_and_writes_nothing(tmp_path, capsys):
    assert main(["tune", "--dry-run", "+experiment=tune_borrowing",
                 f"results_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "policy.borrow_unit_mb: int [1, 64] log" in out
    assert "vm_runtime_mean_s (minimize), vms_lost_per_fault (minimize)" in out
    assert "sampler nsga2" in out and list(tmp_path.iterdir()) == []


def test_a_second_tuning_of_the_same_study_at_once_is_refused(tmp_path):
    import fcntl

    from disco.framework import tune, tune_study

    tuning, planner = tune.prepare([PERIOD, *BOWL, "objective=loss", "tune.trials=1",
                                    f"results_dir={tmp_path}"])
    study_dir = tmp_path / "default"
    study_dir.mkdir()
    fd = os.open(study_dir, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(PlanError, match="another disco tune is tuning it now"):
            tune_study.run(tuning, planner)
    finally:
        os.close(fd)
    tune_study.run(tuning, planner)
    assert len(trials(tmp_path)) == 1
