"""A run costs only itself: a serial sweep runs each run in a child process, so one that hangs
past ``sweep.run_timeout_s`` or kills its process is recorded failed and the sweep goes on. The
config can reach nothing it should not: ``study`` is a simple name, framework keys are typed,
``sweep.task`` resolves (and is checked at plan time) the same way serially and on Ray, never
from the working directory. The private Ray's temp dir is trusted only when private."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import polars as pl
import pytest
from framework_helpers.common import FAST, TESTS, runs_table

from disco.cli import main
from disco.framework import ray_local, reaper, results

SERIAL = ["-m", *FAST, "sweep.serial=true", "sweep.progress=false",
          "policy.periodic_period_ms=50,13,100"]


@pytest.fixture(autouse=True)
def _private_sweep_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DISCO_CACHE_DIR", str(tmp_path_factory.mktemp("sweep_cache")))


def _by_period(tmp_path):
    return {r["policy.periodic_period_ms"]: r for r in runs_table(tmp_path).to_dicts()}


def test_hung_run_times_out_and_the_sweep_goes_on(tmp_path, capsys):
    t0 = time.monotonic()
    assert main([*SERIAL, f"results_dir={tmp_path}", "sweep.run_timeout_s=2",
                 "sweep.task=framework_helpers.tasks:hang_on_13"]) == 1
    assert time.monotonic() - t0 < 60
    assert "2 done, 0 skipped (already complete), 1 failed" in capsys.readouterr().err
    rows = _by_period(tmp_path)
    assert rows[50.0]["status"] == rows[100.0]["status"] == "ok"
    assert rows[13.0]["status"] == "failed"
    assert "timed out" in rows[13.0]["error"] and "sweep.run_timeout_s" in rows[13.0]["error"]


@pytest.mark.parametrize("task", ["sigkill_self_on_13", "die_on_13"])
def test_serial_sweep_survives_a_run_that_kills_its_process(tmp_path, capsys, task):
    args = [*SERIAL, f"results_dir={tmp_path}", f"sweep.task=framework_helpers.tasks:{task}"]
    assert main(args) == 1
    assert "2 done, 0 skipped (already complete), 1 failed" in capsys.readouterr().err
    rows = _by_period(tmp_path)
    assert rows[50.0]["status"] == rows[100.0]["status"] == "ok"
    error = rows[13.0]["error"]
    assert rows[13.0]["status"] == "failed" and "the sweep goes on" in error
    assert ("SIGKILL" in error) if task.startswith("sigkill") else ("exited with code" in error)
    # a re-run redoes only the run that died, and dies with it again, alone
    assert main(args) == 1
    assert "0 done, 2 skipped (already complete), 1 failed" in capsys.readouterr().err


def test_study_cannot_escape_results_dir(tmp_path, capsys):
    inside = tmp_path / "results"
    for study in ("../escaped", str(tmp_path / "abs"), "", "a/b", ".hidden", "-x"):
        assert main([*FAST, f"results_dir={inside}", f"study={study}"]) == 2, study
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "study=" in err, err
    assert not any(tmp_path.iterdir())
    assert main([*FAST, f"results_dir={inside}", "study=my-study_2.b"]) == 0
    assert (inside / "my-study_2.b" / "runs.parquet").is_file()


@pytest.mark.parametrize(("override", "key"), [
    ("+sweep.forse=true", "sweep.forse"), ("++sweep.forse=true", "sweep.forse"),
    ("+ray.adress=auto", "ray.adress"), ("+sweeps.force=true", "sweeps"),
    ("sweep.batch_size=-1", "sweep.batch_size"), ("sweep.run_timeout_s=0", "sweep.run_timeout_s"),
    ("sweep.progress=maybe", "sweep.progress"),
])
def test_framework_keys_are_typed_and_typos_are_errors(tmp_path, capsys, override, key):
    assert main(["-m", *FAST, f"results_dir={tmp_path}", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err, err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("task", "says"), [
    ("nomodule:simulate", "no module named nomodule"),
    ("disco.runner:no_such_function", "defines no no_such_function"),
    ("disco.runner", "expected 'module:function'"),
    ("cwd_task:simulate", "without the working directory"),
])
def test_sweep_task_is_checked_at_plan_time(tmp_path, capsys, monkeypatch, task, says):
    (tmp_path / "cwd_task.py").write_text("from disco import simulate\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as python -m puts the cwd first
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    assert main(["-m", *FAST, "results_dir=out", "sweep.serial=true",
                 f"sweep.task={task}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not (tmp_path / "out").exists()


def test_a_module_named_in_pythonpath_is_a_task_serially(tmp_path, capsys, monkeypatch):
    (tmp_path / "cwd_task.py").write_text("from disco import simulate\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(TESTS)]))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main([*FAST, "results_dir=out", "sweep.task=cwd_task:simulate"]) == 0


def test_malformed_yaml_and_missing_conf_dirs_exit_2_naming_the_file(tmp_path, capsys,
                                                                      monkeypatch):
    bad = tmp_path / "conf" / "policy" / "broken.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("a: [1,\n")
    assert main([*FAST, "--config-dir", str(tmp_path / "conf"), "policy=broken",
                 f"results_dir={tmp_path}/out"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}:2:" in err and "malformed YAML" in err, err
    monkeypatch.setenv("DISCO_CONF_DIR", str(tmp_path / "missing"))
    assert main([*FAST, f"results_dir={tmp_path}/out"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "DISCO_CONF_DIR" in err and "missing" in err, err
    assert not (tmp_path / "out").exists()


# -- the private Ray's temp dir ----------------------------------------------------------------

def _their_dir(tmp_path):
    """A folder another user could plant files in."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chmod(theirs, 0o777)
    return theirs


def test_temp_dir_symlink_is_not_followed(tmp_path):
    theirs = _their_dir(tmp_path)
    predictable = tmp_path / f"disco-ray-{os.getuid()}"
    predictable.symlink_to(theirs)
    path, fresh = ray_local.private_dir(tmp_path)
    assert fresh and path != predictable and theirs not in path.parents
    assert path.parent == tmp_path and not path.is_symlink()
    assert oct(path.stat().st_mode & 0o777) == "0o700" and path.stat().st_uid == os.getuid()
    assert not any(theirs.iterdir())
    with pytest.raises(ray_local.UnsafeTempDir, match="a symlink"):
        ray_local.checked_temp_dir(str(predictable))


def test_a_temp_dir_others_can_enter_or_own_is_not_used(tmp_path):
    predictable = tmp_path / f"disco-ray-{os.getuid()}"
    predictable.mkdir(mode=0o755)
    os.chmod(predictable, 0o755)
    path, fresh = ray_local.private_dir(tmp_path)
    assert fresh and path != predictable
    with pytest.raises(ray_local.UnsafeTempDir, match="mode 755"):
        ray_local.checked_temp_dir(str(predictable))
    if os.getuid() == 0:  # root can hand the folder to another user, as an attacker would own it
        os.chmod(predictable, 0o700)
        os.chown(predictable, 12345, 12345)
        assert ray_local.private_dir(tmp_path)[1]
        with pytest.raises(ray_local.UnsafeTempDir, match="owned by uid 12345"):
            ray_local.checked_temp_dir(str(predictable))
    os.chmod(predictable, 0o700)
    if os.getuid() == 0:
        os.chown(predictable, 0, 0)
    assert ray_local.private_dir(tmp_path) == (predictable, False)  # private: used


def test_an_unsafe_ray_temp_dir_exits_2_before_ray_starts(tmp_path, capsys):
    theirs = _their_dir(tmp_path)
    assert main(["-m", *FAST, f"results_dir={tmp_path}/out", f"ray.temp_dir={theirs}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"ray.temp_dir={theirs}" in err, err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    assert not any(theirs.iterdir())


def test_the_reaper_kills_session_processes_it_never_sampled():
    """A Ray agent started after the reaper's last one-second sample carries the session
    marker in its environment: it is found and killed all the same."""
    marker = "test-" + os.urandom(8).hex()
    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env={**os.environ, ray_local.SESSION_ENV: marker},
                            start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 start_new_session=True)
    try:
        time.sleep(0.2)
        assert late.pid in reaper.marked(marker) and bystander.pid not in reaper.marked(marker)
        reaper.kill_marked(marker)
        assert late.wait(timeout=10) == -9
        assert bystander.poll() is None
    finally:
        for p in (late, bystander):
            p.kill()
            p.wait()


def test_pythonpath_given_explicitly_keeps_the_cwd_but_otherwise_it_is_dropped(tmp_path,
                                                                               monkeypatch):
    from disco.framework.execute import trusted_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "")
    assert trusted_path(["", str(tmp_path), "/usr/lib/python3"]) == ["/usr/lib/python3"]
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert trusted_path([str(tmp_path), "/usr/lib/python3"]) == [str(tmp_path),
                                                                  "/usr/lib/python3"]


def test_a_failed_row_of_a_dead_run_keeps_nothing_of_it(tmp_path, capsys):
    """The run that killed its process leaves no partial files beside its failed row."""
    assert main([*SERIAL, f"results_dir={tmp_path}",
                 "sweep.task=framework_helpers.tasks:sigkill_self_on_13"]) == 1
    capsys.readouterr()
    failed = runs_table(tmp_path).filter(pl.col("status") == "failed")["key"].to_list()
    run = tmp_path / "default" / "runs" / failed[0]
    assert results.verify(run) and not (run / "timeline.parquet").exists()
