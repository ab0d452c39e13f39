"""Sweeps on a real local Ray (2 CPUs), started once for this module and shut down after it.

Every sweep here finds Ray already initialized in the process and uses it, as a notebook would.
"""

from __future__ import annotations

import os

import polars as pl
import pytest
from framework_helpers.common import FAST, ROOT, metric_columns, runs_table

from disco.cli import main

SWEEP = ["-m", *FAST, "policy=cellular_disco,no_balancers", "policy.gang=true,false",
         "sim.replicates=2"]

@pytest.fixture(autouse=True)
def _private_sweep_cache(tmp_path_factory, monkeypatch):
    """Keep the re-run manifests (disco/framework/fastpath.py) out of ~/.cache."""
    monkeypatch.setenv("DISCO_CACHE_DIR", str(tmp_path_factory.mktemp("sweep_cache")))



@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory):
    """A private local Ray, as a sweep starts it. Workers find framework_helpers (tests/ is on
    this process's sys.path) through the path the driver sends with each task; they inherit
    the raylet's environment, set here before it starts."""
    from disco.framework import ray_backend

    os.environ.setdefault("DISCO_TEST_DIE_ONCE", str(tmp_path_factory.mktemp("die_once")))
    started = ray_backend.init({"address": "local", "num_cpus": 2, "object_store_memory_mb": 100},
                               ROOT)
    import ray

    yield ray
    if started:
        ray_backend.shutdown()


def test_multirun_on_ray_writes_one_row_per_run_and_gathers_runs_parquet(tmp_path, local_ray):
    assert local_ray.is_initialized()
    assert main([*SWEEP, f"results_dir={tmp_path}", "sweep.batch_size=3"]) == 0
    df = runs_table(tmp_path)
    assert df.height == 8 and df["key"].n_unique() == 8
    assert (df["status"] == "ok").all()
    assert set(df["policy"]) == {"cellular_disco", "no_balancers"}
    runs = sorted(p.parent.name for p in (tmp_path / "default" / "runs").glob("*/metrics.parquet"))
    assert runs == sorted(df["key"])
    # Ray ran them in worker processes, not here.
    pids = {int(p.read_text().split('"pid": ')[1].split(",")[0])
            for p in (tmp_path / "default" / "runs").glob("*/provenance.json")}
    assert os.getpid() not in pids


def test_serial_and_ray_sweeps_give_identical_metrics(tmp_path):
    sweep = [*SWEEP, "sim.duration_s=3"]  # long enough for the balancers to act
    assert main([*sweep, f"results_dir={tmp_path / 'ray'}"]) == 0
    assert main([*sweep, f"results_dir={tmp_path / 'serial'}", "sweep.serial=true"]) == 0
    on_ray = runs_table(tmp_path / "ray").sort("key")
    serial = runs_table(tmp_path / "serial").sort("key")
    assert on_ray["key"].to_list() == serial["key"].to_list()
    cols = metric_columns(serial)
    assert len(cols) > 5
    assert on_ray.select(cols).equals(serial.select(cols))


def test_a_run_that_raises_on_ray_is_recorded_failed_and_the_rest_go_on(tmp_path, capsys):
    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.batch_size=1",
            "sweep.task=framework_helpers.tasks:fail_on_13", "policy.periodic_period_ms=13,50,100"]
    assert main(args) == 1
    assert "1 failed" in capsys.readouterr().err
    df = runs_table(tmp_path)
    assert df.height == 3
    assert df.filter(pl.col("status") == "failed")["policy.periodic_period_ms"].to_list() == [13.0]
    assert "RuntimeError" in df.filter(pl.col("status") == "failed")["error"][0]


def test_a_ray_worker_that_dies_is_recorded_failed_and_only_its_run(tmp_path, capsys):
    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.batch_size=4",
            "sweep.task=framework_helpers.tasks:die_on_13",
            "policy.periodic_period_ms=50,13,100,200"]
    assert main(args) == 1
    assert "3 done, 0 skipped (already complete), 1 failed" in capsys.readouterr().err
    df = runs_table(tmp_path)
    assert df.height == 4
    failed = df.filter(pl.col("status") == "failed").to_dicts()
    assert [r["policy.periodic_period_ms"] for r in failed] == [13.0]
    assert "ray task failed" in failed[0]["error"]


def _tree(root: int) -> set[int]:
    from disco.framework.reaper import _descendants, _table

    return set(_descendants(root, _table()))


def test_sigkilled_ray_sweep_leaves_no_process_and_resumes_exactly_once(tmp_path):
    import signal
    import time

    from framework_helpers.common import disco_subprocess

    n = 40
    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.batch_size=2", "ray.num_cpus=2",
            "sweep.task=framework_helpers.tasks:slow", f"sim.replicates={n}"]
    proc = disco_subprocess(*args)  # its own private local Ray
    runs = tmp_path / "default" / "runs"
    deadline = time.monotonic() + 90
    tree: set[int] = set()
    while time.monotonic() < deadline and len(list(runs.glob("*/manifest.json"))) < 6:
        tree |= _tree(proc.pid)
        time.sleep(0.1)
    tree |= _tree(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(tree) > 3, "the sweep should have started Ray processes"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in tree):
        time.sleep(0.2)
    alive = [p for p in tree if os.path.exists(f"/proc/{p}")
             and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert not alive, f"left behind: {alive}"
    done_before = len(list(runs.glob("*/manifest.json")))
    assert done_before < n

    assert main([arg for arg in args if not arg.startswith("ray.")]) == 0  # the session Ray
    df = runs_table(tmp_path)
    assert df.height == n and df["key"].n_unique() == n and (df["status"] == "ok").all()


def test_attach_to_an_existing_cluster_ships_the_code_and_writes_absolute_paths(tmp_path,
                                                                                local_ray):
    from framework_helpers.common import disco_subprocess

    # ray.address=auto finds the cluster through $RAY_ADDRESS, as on a cluster node; the
    # private Ray wants its token (Ray's own variables, as for any token-protected cluster).
    address = local_ray.get_runtime_context().gcs_address
    proc = disco_subprocess("-m", *FAST, "ray.address=auto", "results_dir=rel_results",
                            "policy=cellular_disco,no_balancers", cwd=tmp_path,
                            extra_env={"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token",
                                       "RAY_AUTH_TOKEN_PATH": os.environ["RAY_AUTH_TOKEN_PATH"]})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Pushing file package" in err  # runtime_env working_dir: the project was shipped
    df = runs_table(tmp_path / "rel_results")
    assert df.height == 2 and (df["status"] == "ok").all()
    assert str(tmp_path / "rel_results" / "default" / "runs.parquet") in out


SHARED_SCRIPT = """
import sys
import ray
from disco.cli import main
from disco.framework import ray_backend

out, sweep = sys.argv[1], sys.argv[2:]
starts = []
init = ray_backend.init
ray_backend.init = lambda *a, **k: starts.append(init(*a, **k)) or starts[-1]
with ray_backend.shared():
    assert main([*sweep, f"results_dir={out}/a"]) == 0
    gcs = ray.get_runtime_context().gcs_address
    assert main([*sweep, "sim.seed=7", f"results_dir={out}/b"]) == 0
    assert ray.is_initialized() and ray.get_runtime_context().gcs_address == gcs
assert not ray.is_initialized(), "shared() stops the Ray it held"
assert starts == [True, False], starts
with ray_backend.shared():  # every run cached: Ray is not started at all
    assert main([*sweep, f"results_dir={out}/a"]) == 0
assert starts == [True, False] and not ray.is_initialized()
print("ok")
"""


def test_shared_keeps_one_private_ray_for_consecutive_sweeps_and_stops_it(tmp_path):
    """``make run``'s studies share one local Ray: started by the first sweep with runs to do,
    reused by the next, stopped when ``shared()`` ends; not started when all runs are cached."""
    import subprocess
    import sys

    from framework_helpers.common import env

    sweep = ["-m", *FAST, "sim.replicates=2", "ray.num_cpus=2", "sweep.progress=false"]
    done = subprocess.run([sys.executable, "-c", SHARED_SCRIPT, str(tmp_path), *sweep], cwd=ROOT,
                          env={**env(), "DISCO_CACHE_DIR": str(tmp_path / "cache")},
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
    assert runs_table(tmp_path / "a").height == runs_table(tmp_path / "b").height == 2


def test_ray_rows_say_which_node_and_process_ran_them(tmp_path, local_ray):
    import disco.results

    assert main(["-m", *FAST, f"results_dir={tmp_path}", "sim.replicates=2"]) == 0
    df = disco.results.load("default", results_dir=tmp_path).collect()
    assert df.height == 2
    assert set(df["node_id"]) == {local_ray.get_runtime_context().get_node_id()}
    assert set(df["node_ip"]) == {"127.0.0.1"}
    assert os.getpid() not in set(df["pid"]) and df["pid"].null_count() == 0


def test_fail_fast_stops_at_first_failure_on_ray(tmp_path, capsys):
    periods = ",".join(str(p) for p in [13, *range(20, 220, 20)])
    args = ["-m", *FAST, f"results_dir={tmp_path}", "sweep.batch_size=1",
            "sweep.fail_fast=true", "sweep.task=framework_helpers.tasks:fail_on_13_else_slow",
            f"policy.periodic_period_ms={periods}"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "stopped at the first failure" in err
    df = runs_table(tmp_path)
    assert 1 <= df.height < 11 and df.filter(pl.col("status") == "failed").height == 1
    assert set(df["status"]) <= {"ok", "failed"}


def test_hung_run_on_ray_times_out_and_the_sweep_goes_on(tmp_path, capsys):
    import time

    t0 = time.monotonic()
    assert main(["-m", *FAST, f"results_dir={tmp_path}", "sweep.batch_size=1",
                 "sweep.run_timeout_s=3", "sweep.task=framework_helpers.tasks:hang_on_13",
                 "policy.periodic_period_ms=13,50,100,200"]) == 1
    assert time.monotonic() - t0 < 90
    assert "3 done, 0 skipped (already complete), 1 failed" in capsys.readouterr().err
    df = runs_table(tmp_path)
    failed = df.filter(pl.col("status") == "failed").to_dicts()
    assert [r["policy.periodic_period_ms"] for r in failed] == [13.0]
    assert "timed out" in failed[0]["error"] and "sweep.run_timeout_s" in failed[0]["error"]


def test_a_good_run_whose_worker_died_is_retried_even_alone_in_its_batch(tmp_path, capsys):
    """A worker killed under a run (here: by the run itself, once) is not the run's fault: the
    run is retried once, alone, and ends ok (before: a batch of one was failed outright)."""
    assert main(["-m", *FAST, f"results_dir={tmp_path}", "sweep.batch_size=1",
                 "sweep.task=framework_helpers.tasks:die_once",
                 "policy.periodic_period_ms=31,37"]) == 0
    assert "2 done, 0 skipped (already complete), 0 failed" in capsys.readouterr().err
    assert (runs_table(tmp_path)["status"] == "ok").all()


def test_tune_on_ray_asks_its_trials_in_batches_of_the_cpus(tmp_path, local_ray):
    import optuna

    import disco.results

    args = ["tune", "policy.periodic_period_ms=interval(1,100)", "objective=loss",
            "sweep.task=framework_helpers.tasks:bowl", "tune.trials=4", "tune.figures=false",
            f"results_dir={tmp_path}"]
    assert main(args) == 0
    done = optuna.load_study(study_name="default",
                             storage=f"sqlite:///{tmp_path}/default/optuna.db").trials
    assert [t.state.name for t in done] == ["COMPLETE"] * 4
    # 2 CPUs, 1 run per trial: trials 0 and 1 are one batch, asked before either was told
    assert done[1].datetime_start < done[0].datetime_complete
    assert done[2].datetime_start > done[1].datetime_complete
    runs = disco.results.load("default", results_dir=tmp_path).collect()
    assert runs.height == 4 and os.getpid() not in set(runs["pid"])  # the runs ran on Ray
