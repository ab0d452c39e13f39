"""Results are trusted only when they check out: a run is complete when its files match the
manifest written last (key, sizes, sha256), whatever their times say; two sweeps of one study at
once each own a run while they write it; a disk that refuses a write stops the sweep with one
line, keeping what finished."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time

import polars as pl
import pytest
from framework_helpers.common import FAST, ROOT, disco_subprocess, env, runs_table

from disco.cli import main
from disco.framework import results

ARGS = ["-m", *FAST, "sweep.serial=true", "sweep.progress=false", "sim.replicates=3"]


@pytest.fixture(autouse=True)
def _private_sweep_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DISCO_CACHE_DIR", str(tmp_path_factory.mktemp("sweep_cache")))


def _runs(tmp_path):
    return sorted((tmp_path / "default" / "runs").iterdir())


def _matches_the_disk(tmp_path):
    """runs.parquet has one ok row per run folder, each naming its folder, each verified."""
    df = runs_table(tmp_path)
    dirs = _runs(tmp_path)
    assert sorted(df["key"]) == [d.name for d in dirs]
    assert df["key"].n_unique() == df.height and (df["status"] == "ok").all()
    assert all(results.verify(d) for d in dirs)
    for d in dirs:
        assert pl.read_parquet(d / "metrics.parquet")["key"].to_list() == [d.name]
    return df


def test_copied_metrics_file_is_detected_and_redone(tmp_path, capsys):
    args = [*ARGS, f"results_dir={tmp_path}"]
    assert main(args) == 0
    a, b, _ = _runs(tmp_path)
    shutil.copy2(a / "metrics.parquet", b / "metrics.parquet")  # b now claims to be a
    capsys.readouterr()
    assert main(args) == 0
    assert "1 done, 2 skipped" in capsys.readouterr().err
    _matches_the_disk(tmp_path)


DAMAGES = ("delete config.yaml", "delete vms.parquet", "truncate timeline.parquet",
           "append to provenance.json", "delete manifest.json")


def test_missing_truncated_or_changed_files_are_detected_and_redone(tmp_path, capsys):
    args = [*ARGS[:-1], "sim.replicates=6", f"results_dir={tmp_path}"]
    assert main(args) == 0
    for victim, damage in zip(_runs(tmp_path), DAMAGES, strict=False):  # one run left whole
        how, name = damage.split(" ")[0], damage.split(" ")[-1]
        file = victim / name
        if how == "delete":
            file.unlink()
        elif how == "truncate":
            os.truncate(file, file.stat().st_size // 2)
        else:
            with open(file, "a") as f:
                f.write(" ")
        assert not results.verify(victim), damage
    capsys.readouterr()
    assert main(args) == 0
    assert "5 done, 1 skipped" in capsys.readouterr().err
    _matches_the_disk(tmp_path)


def test_fast_path_checks_contents_not_times(tmp_path, capsys):
    """A file changed in place with its size and mtime put back (``cp -p``, ``rsync -a``)."""
    args = [*ARGS, f"results_dir={tmp_path}"]
    assert main(args) == 0
    assert main(args) == 0
    assert "0 done, 3 skipped" in capsys.readouterr().err  # answered by the fast path
    victim = _runs(tmp_path)[0] / "timeline.parquet"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_mtime_ns == st.st_mtime_ns and victim.stat().st_size == st.st_size
    assert main(args) == 0
    assert "1 done, 2 skipped" in capsys.readouterr().err
    _matches_the_disk(tmp_path)


def test_a_row_whose_key_is_not_its_folder_is_not_trusted(tmp_path):
    assert main([*ARGS, f"results_dir={tmp_path}"]) == 0
    a, b, _ = _runs(tmp_path)
    renamed = a.with_name("0" * len(a.name))
    a.rename(renamed)  # a whole, self-consistent run folder under another key
    assert results.read_row(renamed) is None and results.read_row(b) is not None


def test_two_sweeps_of_one_study_lose_nothing(tmp_path):
    """Two terminals, one command: each run is written once by whoever claims it first; both
    sweeps end ok and the table matches the disk (before: the second deleted the first's
    temporary files mid-write, and runs were recorded failed)."""
    args = ["-m", *FAST, "sweep.serial=true", "sweep.progress=false", "sim.replicates=10",
            f"results_dir={tmp_path}"]
    procs = [disco_subprocess(*args) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "0 failed" in err
    done = [int(err.rsplit(" runs: ", 1)[1].split(" done")[0]) for _, err in outs]
    assert sum(done) >= 10  # every run was written at least once, none failed
    df = _matches_the_disk(tmp_path)
    assert df.height == 10
    assert not list((tmp_path / "default" / "runs").glob("*/.*.tmp"))


def test_a_second_sweep_waits_for_a_claimed_run_and_uses_its_result(tmp_path):
    """A run claimed by another live process is not touched: this sweep waits for the claim
    and takes the row the holder wrote."""
    from disco.framework.plan import make_plan
    from disco.framework.sweep import run_sweep

    plan = make_plan([*FAST, f"results_dir={tmp_path}", "sweep.serial=true",
                      "sweep.progress=false"])
    run = results.run_dir(tmp_path, plan.runs[0].study, plan.runs[0].key)
    # another process holds the claim for 1.5 s
    script = ("import sys, time; sys.path[:0] = [sys.argv[1]]\n"
              "from pathlib import Path\nfrom disco.framework import results\n"
              "with results.claim(Path(sys.argv[2]), {'sweep': 'other'}):\n"
              "    print('held', flush=True); time.sleep(1.5)\n")
    other = subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(run)], env=env(),
                             stdout=subprocess.PIPE, text=True)
    assert other.stdout is not None and other.stdout.readline().strip() == "held"
    assert results.holder(run) == {"sweep": "other"}
    t0 = time.monotonic()
    outcome = run_sweep(plan)
    assert time.monotonic() - t0 >= 1.0  # it waited for the claim
    other.wait(timeout=30)
    assert outcome.ok and outcome.done == 1 and results.verify(run)
    assert results.holder(run) is None


def test_stale_temporary_files_are_cleaned_tables_included(tmp_path):
    run = tmp_path / "k"
    (run / "tables").mkdir(parents=True)
    for stale in (run / ".timeline.parquet.1.tmp", run / "tables" / ".faults.parquet.1.tmp",
                  run / "tables" / "old.parquet", run / "error.txt"):
        stale.write_bytes(b"x")
    results.prepare(run)
    assert [p.name for p in run.iterdir()] in ([], [results.LOCK])


def test_a_full_disk_is_a_write_error_naming_the_file(tmp_path, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.Path, "write_bytes", lambda self, data: full(self, data))
    with pytest.raises(results.WriteError) as err:
        results.write_run(tmp_path, row={"key": tmp_path.name, "status": "ok"}, config={},
                          provenance={})
    assert "No space left on device" in str(err.value) and str(tmp_path) in str(err.value)
    assert not results.verify(tmp_path) and not list(tmp_path.glob(".*.tmp"))


def test_an_unwritable_results_dir_exits_2_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    assert main([*FAST, f"results_dir={blocker}/r"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(blocker) in err and "not a directory" in err
    assert blocker.read_text() == ""
