"""Sweeps without Ray: files of a run, skip and force, failures, kill -9 and resume."""

from __future__ import annotations

import json
import math
import signal
import time

import polars as pl
import pytest
import yaml
from framework_helpers.common import FAST, ROOT, disco_subprocess, metric_columns, runs_table

from disco import SimConfig, simulate
from disco.cli import main
from disco.framework.plan import make_plan
from disco.framework.sweep import run_sweep

FILES = ("metrics.parquet", "timeline.parquet", "vms.parquet", "config.yaml", "provenance.json")

@pytest.fixture(autouse=True)
def _private_sweep_cache(tmp_path_factory, monkeypatch):
    """Keep the re-run manifests (disco/framework/fastpath.py) out of ~/.cache."""
    monkeypatch.setenv("DISCO_CACHE_DIR", str(tmp_path_factory.mktemp("sweep_cache")))



def test_single_run_writes_its_files_and_prints_a_metrics_table(tmp_path, capsys):
    assert main([*FAST, f"results_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "cpu_utilization" in out and "runs.parquet" in out
    (run,) = (tmp_path / "default" / "runs").iterdir()
    for name in FILES:
        assert (run / name).is_file(), name
    assert not list(run.glob(".*.tmp"))
    prov = json.loads((run / "provenance.json").read_text())
    assert {"git_commit", "git_dirty", "packages", "host", "seed", "started_at",
            "ended_at"} <= set(prov)
    row = pl.read_parquet(run / "metrics.parquet").to_dicts()[0]
    assert row["status"] == "ok" and row["key"] == run.name and row["seed"] == prov["seed"]
    timeline = pl.read_parquet(run / "timeline.parquet")
    assert timeline.height > 0 and set(timeline["key"]) == {run.name}


def test_config_yaml_reproduces_the_run_alone(tmp_path):
    assert main([*FAST, f"results_dir={tmp_path}", "sim.seed=3"]) == 0
    (run,) = (tmp_path / "default" / "runs").iterdir()
    cfg = SimConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    alone = simulate(cfg).metrics
    row = pl.read_parquet(run / "metrics.parquet").to_dicts()[0]
    for name, value in alone.items():
        if name != "wall_time_s":
            assert row[name] == value or (math.isnan(row[name]) and math.isnan(value)), name


def test_rerun_skips_complete_runs_and_force_reruns_them(tmp_path, capsys):
    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.serial=true",
            "policy=cellular_disco,no_balancers", "sim.replicates=2"]
    assert main(args) == 0
    first = runs_table(tmp_path)
    assert first.height == 4 and first["key"].n_unique() == 4
    capsys.readouterr()
    assert main(args) == 0
    assert "0 done, 4 skipped" in capsys.readouterr().err
    assert main([*args, "sweep.force=true"]) == 0
    assert "4 done, 0 skipped" in capsys.readouterr().err
    again = runs_table(tmp_path)
    cols = metric_columns(first)
    assert again.select(cols).equals(first.select(cols))


def test_a_run_another_study_completed_is_copied_not_run_again(tmp_path, capsys):
    base = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.serial=true", "sim.replicates=2"]
    assert main([*base, "study=first", "policy=cellular_disco"]) == 0
    capsys.readouterr()
    # the same two configs, and one new one, in another study: two copied, one run
    assert main([*base, "study=second", "policy=cellular_disco,no_balancers"]) == 0
    assert "2 done, 2 skipped" in capsys.readouterr().err
    first = pl.read_parquet(tmp_path / "first" / "runs.parquet")
    second = pl.read_parquet(tmp_path / "second" / "runs.parquet")
    shared = second.filter(pl.col("key").is_in(first["key"].implode()))
    assert shared.height == 2 and (shared["study"] == "second").all()
    cols = metric_columns(first)
    assert shared.sort("key").select(cols).equals(first.sort("key").select(cols))
    for key in shared["key"]:
        run = tmp_path / "second" / "runs" / key
        row = pl.read_parquet(run / "metrics.parquet")
        orig = pl.read_parquet(tmp_path / "first" / "runs" / key / "metrics.parquet")
        assert row.schema == orig.schema and row["study"].to_list() == ["second"]
        assert row.drop("study").equals(orig.drop("study"))
        prov = json.loads((run / "provenance.json").read_text())
        assert prov["study"] == "second" and prov["reused_from"] == "first"
        for name in ("timeline.parquet", "vms.parquet", "config.yaml"):
            assert (run / name).read_bytes() == (
                tmp_path / "first" / "runs" / key / name).read_bytes()
    # a damaged donor is not copied: the run is done again, in the third study
    key = shared["key"][0]
    (tmp_path / "first" / "runs" / key / "timeline.parquet").write_bytes(b"damaged")
    (tmp_path / "second" / "runs" / key / "timeline.parquet").write_bytes(b"damaged")
    assert main([*base, "study=third", "policy=cellular_disco"]) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().err
    third = pl.read_parquet(tmp_path / "third" / "runs.parquet")
    assert third.select(cols).sort(cols[0]).equals(
        first.select(cols).sort(cols[0]))


def test_a_run_that_raises_is_recorded_failed_and_the_sweep_goes_on(tmp_path, capsys):
    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.serial=true",
            "sweep.task=framework_helpers.tasks:fail_on_13",
            "policy.periodic_period_ms=13,50,100"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "unlucky period" in err and "1 failed" in err
    df = runs_table(tmp_path)
    assert df.height == 3
    bad = df.filter(pl.col("policy.periodic_period_ms") == 13.0).to_dicts()[0]
    assert bad["status"] == "failed" and "RuntimeError: unlucky period" in bad["error"]
    assert set(df.filter(pl.col("status") == "ok")["policy.periodic_period_ms"]) == {50.0, 100.0}
    # Failed runs are not complete: the next invocation retries only them.
    assert main(args) == 1
    assert "0 done, 2 skipped (already complete), 1 failed" in capsys.readouterr().err


def test_sweep_killed_with_sigkill_resumes_without_duplicates(tmp_path):
    n = 30
    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.serial=true",
            "sweep.task=framework_helpers.tasks:slow", f"sim.replicates={n}"]
    proc = disco_subprocess(*args)
    runs = tmp_path / "default" / "runs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(runs.glob("*/manifest.json"))) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(list(runs.glob("*/manifest.json")))
    assert 5 <= done_before < n, "the sweep should have been killed half-way"
    assert not (tmp_path / "default" / "runs.parquet").exists()

    plan = make_plan(args[1:])
    outcome = run_sweep(plan)
    assert outcome.skipped == done_before and outcome.done == n - done_before
    df = runs_table(tmp_path)
    assert df.height == n and df["key"].n_unique() == n
    assert sorted(df["replicate"]) == list(range(n))
    assert (df["status"] == "ok").all()
    assert not list(runs.glob("*/.*.tmp"))


def test_rerun_of_a_complete_sweep_is_answered_from_its_manifest_unless_a_run_went(tmp_path,
                                                                                    capsys):
    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.serial=true", "sim.replicates=3"]
    assert main(args) == 0
    capsys.readouterr()
    runs = tmp_path / "default" / "runs.parquet"
    before = runs.stat().st_mtime_ns
    assert main(args) == 0  # fast path: nothing rewritten
    assert "0 done, 3 skipped" in capsys.readouterr().err
    assert runs.stat().st_mtime_ns == before
    victim = next((tmp_path / "default" / "runs").glob("*/metrics.parquet"))
    victim.unlink()
    assert main(args) == 0
    assert "1 done, 2 skipped" in capsys.readouterr().err
    assert victim.exists() and runs_table(tmp_path).height == 3


@pytest.mark.parametrize("loosen", ["cache folder", "manifest"])
def test_a_rerun_manifest_others_could_write_is_not_trusted(tmp_path, capsys, loosen):
    import os

    from disco.framework import fastpath

    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.serial=true", "sim.replicates=2"]
    assert main(args) == 0
    (manifest,) = fastpath.cache_dir().glob("*.json")
    assert fastpath.lookup(args[1:]) is not None
    os.chmod(fastpath.cache_dir() if loosen == "cache folder" else manifest, 0o777)
    assert fastpath.lookup(args[1:]) is None
    runs = tmp_path / "default" / "runs.parquet"
    before = runs.stat().st_mtime_ns
    assert main(args) == 0  # the normal path: complete runs skipped, the table written again
    assert "0 done, 2 skipped" in capsys.readouterr().err
    assert runs.stat().st_mtime_ns != before


EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_at_minimal_size(tmp_path, experiment, capsys):
    args = ["-m", f"+experiment={experiment}", "sim.duration_s=0.5", "sim.replicates=1",
            "sweep.serial=true", "sweep.progress=false", f"results_dir={tmp_path}"]
    if experiment.startswith("sensitivity"):  # one sweep per knob: experiments/reproduce.py
        assert main(args) == 2
        assert "experiments/reproduce.py" in capsys.readouterr().err
        assert not tmp_path.joinpath(experiment).exists()
        return
    if experiment.startswith("tune_"):  # a search space (tune.params): run by `disco tune`
        assert main(args) == 2
        assert "run it with `disco tune`" in capsys.readouterr().err
        assert main(["tune", f"+experiment={experiment}", "sim.replicates=2", "tune.trials=2",
                     "tune.figures=false", "sweep.serial=true", "sweep.progress=false",
                     f"results_dir={tmp_path}"]) == 0  # its own 30 s: faults must hit VMs
        study = next(tmp_path.iterdir())
        assert len(list(study.glob("runs/*/metrics.parquet"))) == 4
        return
    assert main(args) == 0
    plan = make_plan(args[1:])
    df = runs_table(tmp_path, plan.study)
    assert df.height == len(plan.runs) and (df["status"] == "ok").all()


def test_a_run_whose_output_cannot_be_written_is_recorded_failed(tmp_path, capsys):
    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.serial=true",
            "sweep.task=framework_helpers.tasks:ragged_timeline"]
    assert main(args) == 1
    row = runs_table(tmp_path).to_dicts()[0]
    assert row["status"] == "failed" and row["error"]


def test_ray_batches_follow_the_measured_run_time_and_shrink_at_the_end():
    from disco.framework.ray_backend import Batcher

    def cut(n: int, run_s: float, fixed: int | None = None) -> list[int]:
        b, sizes = Batcher(list(range(n)), fixed, cpus=2), []
        while b.queue:
            batch = b.next()
            sizes.append(len(batch))
            for _ in batch:
                b.observe(run_s)
        assert sum(sizes) == n
        return sizes

    short = cut(1000, 0.01)
    assert short[0] == 1 and max(short) == 25 and len(short) < 100 and short[-1] == 1
    assert set(cut(30, 2.0)) == {1}
    assert set(cut(30, 2.0, fixed=10)) == {10}


def test_make_run_entry_runs_its_study_and_draws_the_figure(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduce",
                                                  ROOT / "experiments" / "reproduce.py")
    reproduce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reproduce)
    one_knob = ("sensitivity.knobs=[{knob:policy.gang,from:true,to:false,scenario:raytrace2x,"
                "metric:vm_runtime_all_s,expect:up}]")  # every shipped line: test_sensitivity
    assert reproduce.main([f"results_dir={tmp_path}", "sweep.serial=true",
                           "sim.duration_s=0.5", one_knob]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "smoke_balance" / "cpu_utilization_by_policy.png"
    assert str(tmp_path / "smoke_balance" / "runs.parquet") in out and str(png) in out
    assert png.stat().st_size > 1000
    # The same command again: answered from its manifest, every file checked, none rewritten.
    argv = [f"results_dir={tmp_path}", "sweep.serial=true", "sim.duration_s=0.5", one_knob]
    index = tmp_path / "report" / "index.md"
    written = {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*") if f.is_file()}
    assert reproduce.main(argv) == 0
    again = capsys.readouterr().out
    assert "nothing changed" in again
    findings = [line for line in out.splitlines() if line.startswith(("figure:", "  "))]
    assert findings and findings == [line for line in again.splitlines()
                                     if line.startswith(("figure:", "  "))]
    assert {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*") if f.is_file()} == written
    # ... but not once a file it printed or a run is changed or gone
    a = reproduce.parse(argv)
    assert reproduce.cached(a) is not None
    index.write_text(index.read_text() + "edited\n")
    assert reproduce.cached(a) is None
    # ... while each study's sweep, unchanged, still needs no planning, until one of its runs goes
    assert all(reproduce.study_cached(a, study) is not None for study in a.studies)
    next((tmp_path / "recovery" / "runs").glob("*/metrics.parquet")).unlink()
    assert reproduce.study_cached(a, "recovery") is None
    assert reproduce.study_cached(a, "paging") is not None
    assert reproduce.cached(reproduce.parse([*argv, "sim.seed=1"])) is None
