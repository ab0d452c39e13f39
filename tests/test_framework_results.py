"""Results as one clean DataFrame (disco.results.load), runs.parquet from the current plan,
sweep manifests, SimResult.to_polars, task code in the run key, sweep.fail_fast."""

from __future__ import annotations

import json
import socket

import polars as pl
import pytest
import yaml
from framework_helpers.common import runs_table

from disco import SimConfig, simulate
from disco.cli import main
from disco.framework.plan import make_plan

TINY = ["sim.duration_s=0.5", "sim.sample_interval_s=0.5", "sweep.serial=true",
        "sweep.progress=false"]
UTC_US = pl.Datetime("us", "UTC")


@pytest.fixture(autouse=True)
def _private_sweep_cache(tmp_path_factory, monkeypatch):
    """Keep the re-run manifests (disco/framework/fastpath.py) out of ~/.cache."""
    monkeypatch.setenv("DISCO_CACHE_DIR", str(tmp_path_factory.mktemp("sweep_cache")))


def test_load_returns_every_run_with_flat_config(tmp_path):
    import disco.results

    r = f"results_dir={tmp_path}"
    assert main(["-m", *TINY, r, "policy.gang=true,false"]) == 0
    assert main(["-m", *TINY, r, "policy.periodic_period_ms=100,50"]) == 0  # reuses one run
    assert main(["-m", *TINY, r, "study=other", "machine=origin2000_128", "cells=cells_16",
                 "sweep.task=framework_helpers.tasks:fail_on_13",
                 "policy.periodic_period_ms=13,20"]) == 1
    df = disco.results.load("default", results_dir=tmp_path).collect()
    assert df.height == 3  # every run of the study, not just the last sweep's two
    assert runs_table(tmp_path).height == 2
    assert df.schema["started_at"] == df.schema["ended_at"] == UTC_US
    assert set(df["status"]) == {"ok"} and df["error"].null_count() == 3
    assert {"host", "node_id", "node_ip", "pid"} <= set(df.columns)
    assert set(df["pid"]) and set(df["host"]) == {socket.gethostname()}
    # The whole config, flattened: group choices' values, lists of mappings by index.
    assert set(df["config.machine.nodes"]) == {16} and set(df["config.cells.count"]) == {8}
    assert sorted(df["config.policy.periodic_period_ms"]) == [50.0, 100.0, 100.0]
    assert sorted(df["config.policy.gang"]) == [False, True, True]
    assert df["config.workload.vms.0.count"].dtype == pl.Int64
    assert not [c for c in df.columns if "." in c and not c.startswith("config.")]
    # Across studies whose columns differ: diagonal_relaxed, one frame.
    both = disco.results.load(str(tmp_path / "*")).collect()
    assert both.height == 5 and set(both["study"]) == {"default", "other"}
    failed = both.filter(pl.col("status") == "failed").to_dicts()
    assert len(failed) == 1 and "unlucky period" in failed[0]["error"]
    assert failed[0]["config.machine.nodes"] == 64
    assert both.filter(pl.col("study") == "other")["cpu_utilization"].null_count() == 1
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        disco.results.load("nothing_here", results_dir=tmp_path)


def test_runs_parquet_columns_come_from_the_current_plan(tmp_path):
    r = f"results_dir={tmp_path}"
    assert main(["-m", *TINY, r, "policy.gang=true,false", "+experiment=smoke",
                 "sweep.params.policy=cellular_disco", "sim.replicates=1", "study=default"]) == 0
    first = runs_table(tmp_path)
    assert "policy.gang" in first.columns and set(first["experiment"]) == {"smoke"}
    # The run with gang=true is reused by a sweep that never mentions gang or experiment.
    assert main(["-m", *TINY, r, "policy.periodic_period_ms=100,50", "sim=short",
                 "sim.duration_s=0.5"]) == 0
    df = runs_table(tmp_path)
    assert df.height == 2
    assert "policy.gang" not in df.columns and "experiment" not in df.columns
    assert df["policy.periodic_period_ms"].to_list() == [100.0, 50.0]  # plan order
    assert df.schema["started_at"] == UTC_US
    assert not [c for c in df.columns if c.startswith("config.")]


def test_each_sweep_leaves_a_dated_manifest(tmp_path):
    r = f"results_dir={tmp_path}"
    assert main(["-m", *TINY, r, "policy.gang=true,false"]) == 0
    assert main(["-m", *TINY, r, "policy.gang=true", "sim.replicates=2"]) == 0
    manifests = sorted((tmp_path / "default" / "sweeps").glob("*.json"))
    assert len(manifests) == 2
    second = json.loads(manifests[-1].read_text())
    assert second["command"][:2] == ["disco", "-m"] and second["code_version"]
    assert [(x["replicate"], x["skipped"], x["status"]) for x in second["runs"]] == \
        [(0, True, "ok"), (1, False, "ok")]
    assert all(x["policy.gang"] is True for x in second["runs"])


def test_load_reads_runs_written_before_the_config_was_flattened(tmp_path):
    """A run of the earlier format: ISO strings for times, an override column, no config."""
    import disco.results

    run = tmp_path / "old" / "runs" / "k1"
    run.mkdir(parents=True)
    cfg = SimConfig()
    cfg.sim.duration_s = 0.5
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    pl.DataFrame({"key": ["k1"], "study": ["old"], "status": ["ok"], "policy": ["x"],
                  "policy.gang": [True], "cpu_utilization": [0.5], "error": [None],
                  "started_at": ["2026-01-02T03:04:05.678+00:00"],
                  "ended_at": ["2026-01-02T03:04:06.000+00:00"], "host": ["h"]}
                 ).write_parquet(run / "metrics.parquet")
    df = disco.results.load(tmp_path / "old").collect()
    assert df.schema["started_at"] == UTC_US
    assert df["started_at"][0].isoformat() == "2026-01-02T03:04:05.678000+00:00"
    assert df["config.sim.duration_s"][0] == 0.5 and "policy.gang" not in df.columns
    assert df["node_id"].dtype == pl.String and df["pid"].dtype == pl.Int64


def test_a_run_row_holds_its_config_as_json_and_load_flattens_it_as_the_flat_format(tmp_path):
    """A run's metrics.parquet has its config in one ``config_json`` column, not ~190 flattened
    ones; ``load`` gives the same ``config.`` columns as for a file of the flattened format."""
    import shutil

    import disco.results
    from disco.framework.results import CONFIG_JSON, config_columns

    assert main(["-m", *TINY, f"results_dir={tmp_path / 'r'}", "policy.gang=true,false"]) == 0
    shutil.copytree(tmp_path / "r" / "default", tmp_path / "flat" / "default")
    for f in sorted((tmp_path / "flat" / "default" / "runs").glob("*/metrics.parquet")):
        row = pl.read_parquet(f)
        assert CONFIG_JSON in row.columns and not [c for c in row.columns
                                                   if c.startswith("config.")]
        cfg = json.loads(row[CONFIG_JSON][0])
        assert cfg == yaml.safe_load((f.parent / "config.yaml").read_text())
        row.drop(CONFIG_JSON).hstack(pl.from_dicts([config_columns(cfg)])).write_parquet(f)
    new = disco.results.load(tmp_path / "r" / "default").collect().sort("key")
    flat = disco.results.load(tmp_path / "flat" / "default").collect().sort("key")
    assert CONFIG_JSON not in new.columns and new.schema == flat.schema
    assert new.equals(flat)
    assert sorted(new["config.policy.gang"]) == [False, True]


def test_sim_result_to_polars_gives_each_table():
    cfg = SimConfig()
    cfg.sim.duration_s = 0.5
    cfg.sim.sample_interval_s = 0.25
    result = simulate(cfg)
    metrics = result.to_polars()
    assert metrics.height == 1 and metrics["cpu_utilization"][0] == \
        result.metrics["cpu_utilization"]
    timeline = result.to_polars("timeline")
    assert timeline.height == len(result.timeline["time_s"]) and "cell" in timeline.columns
    assert result.to_polars("vms").height == len(result.vms["vm"])
    with pytest.raises(KeyError, match="metrics, timeline, vms"):
        result.to_polars("nope")


TASK = """\
from disco import simulate


def task(cfg):
    return simulate(cfg){suffix}
"""


def test_editing_the_task_module_changes_run_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "my_task_module.py"
    module.write_text(TASK.format(suffix=""))
    line = ["sweep.task=my_task_module:task", "sim.replicates=2"]
    first = [r.key for r in make_plan(line).runs]
    assert first == [r.key for r in make_plan(line).runs]  # stable while the code is
    module.write_text(TASK.format(suffix="  # a changed line"))
    edited = [r.key for r in make_plan(line).runs]
    assert not set(first) & set(edited)
    default = make_plan(["sim.replicates=2"]).runs
    assert not set(first) & {r.key for r in default}
    assert main(["--dry-run", "sweep.task=no_such_module_here:task"]) == 2
    assert "sweep.task=no_such_module_here:task" in capsys.readouterr().err


def test_fail_fast_stops_at_first_failure(tmp_path, capsys):
    args = ["-m", *TINY, f"results_dir={tmp_path}", "sweep.fail_fast=true",
            "sweep.task=framework_helpers.tasks:fail_on_13",
            "policy.periodic_period_ms=50,13,100,200"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "stopped at the first failure" in err and "2 runs not run" in err
    df = runs_table(tmp_path)
    assert df["policy.periodic_period_ms"].to_list() == [50.0, 13.0]
    assert df["status"].to_list() == ["ok", "failed"]
    assert len(list((tmp_path / "default" / "runs").glob("*/metrics.parquet"))) == 2
    # Without fail_fast the same sweep goes on; the finished run is reused.
    assert main([a for a in args if a != "sweep.fail_fast=true"]) == 1
    assert "2 done, 1 skipped (already complete), 1 failed" in capsys.readouterr().err


def test_run_jobs_plans_override_lists_through_the_same_planner_and_cache(tmp_path):
    """What a tuner does per trial: one config per override list, same keys and run cache as
    ``disco -m``, and the study's runs.parquet left alone."""
    from disco.framework.plan import Planner
    from disco.framework.sweep import run_jobs

    r = f"results_dir={tmp_path}"
    assert main(["-m", *TINY, r, "policy.gang=true,false"]) == 0
    before = runs_table(tmp_path)
    planner = Planner()
    jobs = [[*TINY, r, "policy.gang=true"], [*TINY, r, "policy.gang=false", "sim.seed=5"]]
    plan, outcome = run_jobs(jobs, planner=planner)
    assert [s.key for s in plan.runs][0] in set(before["key"])  # the sweep's run, reused
    assert (outcome.skipped, outcome.done, outcome.failed) == (1, 1, 0)
    assert [row["seed"] for row in outcome.rows] == [s.seed for s in plan.runs]
    assert runs_table(tmp_path).equals(before)
    again = planner.plan_jobs(jobs)
    assert [s.key for s in again.runs] == [s.key for s in plan.runs]
    with pytest.raises(ValueError, match="one config per override list"):
        planner.plan_jobs([["policy.gang=true,false"]])


def test_a_one_row_table_reads_back_as_written(tmp_path):
    """A run's metrics row is written without dictionaries, statistics or compression
    (``results.write_parquet``): the same schema and values come back, NaN and nulls too."""
    from datetime import UTC, datetime

    from disco.framework.results import row_frame, write_parquet

    row = {"key": "k", "n": 3, "x": 0.1, "nan": float("nan"), "ok": True, "none": None,
           "empty": [], "at": datetime(2026, 12, 2, tzinfo=UTC), "text": "a|b"}
    frame = row_frame(row)
    write_parquet(tmp_path / "m.parquet", frame)
    back = pl.read_parquet(tmp_path / "m.parquet")
    assert back.schema == frame.schema
    assert back.equals(frame)  # NaN equals NaN here
    assert back.to_dicts()[0]["n"] == 3 and back.to_dicts()[0]["at"] == row["at"]
