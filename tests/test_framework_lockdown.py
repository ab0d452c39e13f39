"""A sweep's private Ray, seen from another process on the machine while it runs: nothing of
it answers without its token, it listens on loopback only, on ports the kernel chose, its
files are in a folder only its user can enter, modules lying in the working directory run in
none of its processes; and when its raylet dies, the sweep still ends with its table.

One sweep (one Ray start) is held mid-run by its task (``framework_helpers.tasks:held``) while
the probes run; the tests read what the fixture saw.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
from framework_helpers import ports
from framework_helpers.common import FAST, TESTS
from framework_helpers.tasks import RELEASE_ENV

from disco.framework import results

# Modules a hostile working directory offers; each leaves a marker if anything imports it.
SHADOWS = ("yaml", "numpy", "polars", "grpc", "disco/__init__")


@pytest.fixture(scope="module")
def held_sweep(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile_cwd")
    marks = work / "imported"
    marks.mkdir()
    for mod in SHADOWS:
        path = work / f"{mod}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"import os\nopen(os.path.join({str(marks)!r}, '{mod.split('/')[0]}-' "
                        "+ str(os.getpid())), 'w').close()\n")
    release = work / "release"
    out = work / "results"
    env = {**os.environ, "PYTHONPATH": str(TESTS), RELEASE_ENV: str(release),
           "DISCO_CACHE_DIR": str(work / "cache")}
    disco = Path(sys.executable).with_name("disco")  # the console script, as a user runs it
    proc = subprocess.Popen(
        [str(disco), "-m", *FAST, "sweep.task=framework_helpers.tasks:held", "sim.replicates=6",
         "sweep.batch_size=1", "ray.num_cpus=2", f"results_dir={out}", "sweep.progress=false"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = out / "default" / "runs"
    seen: dict = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(results.holder(d) is not None for d in runs.glob("*")) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        pids = ports.tree(proc.pid)
        seen["names"] = {pid: ports.name(pid) for pid in pids}
        seen["listening"] = ports.listening(pids)
        job_marker = work / "job-ran"
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:  # a probe of a port that does not answer waits
            every = [p for _, p, _ in seen["listening"]]
            seen["post"] = dict(zip(every, pool.map(lambda p: ports.post_job(p, job_marker),
                                                    every), strict=True))
            seen["grpc"] = dict(zip(every, pool.map(ports.grpc_codes, every), strict=True))
        seen["probe_s"] = time.monotonic() - t0
        raylet = next(pid for pid, name in seen["names"].items() if "raylet/raylet" in name)
        session = next(a.split("=", 1)[1] for a in ports.cmdline(raylet)
                       if a.startswith("--session_dir="))
        seen["session"] = Path(session)
        seen["ancestors"] = {p: os.stat(p) for p in Path(session).parents}
        seen["token"] = Path(open(f"/proc/{raylet}/environ").read().split("RAY_AUTH_TOKEN_PATH=")
                             [1].split("\0")[0])
        seen["token_stat"] = os.stat(seen["token"])
        release.touch()  # two runs finish (writing every file), the others stay held
        while time.monotonic() < deadline and len(list(runs.glob("*/manifest.json"))) < 2:
            time.sleep(0.05)
        time.sleep(0.5)
        seen["job_ran"] = job_marker.exists()
        os.kill(raylet, signal.SIGKILL)
        t0 = time.monotonic()
        seen["out"], seen["err"] = proc.communicate(timeout=120)
        seen["end_s"] = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    seen["returncode"] = proc.returncode
    seen["imported"] = sorted(p.name for p in marks.iterdir())
    seen["results"] = out
    return seen


def test_ray_job_endpoint_refuses_unauthenticated_submissions(held_sweep):
    print({k: held_sweep.get(k) for k in ("probe_s", "end_s")})
    post = held_sweep["post"]
    assert not held_sweep["job_ran"], "a job submitted without the token ran"
    assert not [p for p, r in post.items() if r.startswith("HTTP 2")], post
    # the dashboard agent's job API is there, and says 401 to a request without the token
    assert "HTTP 401" in post.values(), post


def test_private_ray_listens_on_loopback_only_and_refuses_rpc_without_its_token(held_sweep):
    listening = held_sweep["listening"]
    assert len(listening) >= 6, listening  # GCS, raylet, workers, agents
    assert {addr for addr, _, _ in listening} == {"127.0.0.1"}, listening
    # the machine-wide fixed ports of Ray's defaults are not ours: the kernel chose them
    assert not {52365, 44217, 44227} & {port for _, port, _ in listening}
    names = held_sweep["names"]
    codes = held_sweep["grpc"]
    assert not [p for p, c in codes.items() if "OK" in c.values()], codes
    gcs = [p for _, p, pid in listening if "gcs_server" in names[pid]]
    raylet = [p for _, p, pid in listening if "raylet/raylet" in names[pid]]
    workers = [p for _, p, pid in listening if names[pid].startswith("ray::")]
    assert gcs and raylet and workers
    assert all(codes[p]["/ray.rpc.NodeInfoGcsService/GetClusterId"] == "UNAUTHENTICATED"
               for p in gcs), codes
    # the raylet's node manager (its other port serves objects to other raylets, none here)
    assert any(codes[p]["/ray.rpc.NodeManagerService/GetNodeStats"] == "UNAUTHENTICATED"
               for p in raylet), codes
    assert any(codes[p]["/ray.rpc.CoreWorkerService/GetCoreWorkerStats"] == "UNAUTHENTICATED"
               for p in workers), codes


def test_private_ray_files_are_in_a_folder_only_its_user_can_enter(held_sweep):
    uid = os.getuid()
    private = [p for p, st in held_sweep["ancestors"].items()
               if st.st_uid == uid and not stat.S_IMODE(st.st_mode) & 0o077]
    assert private, f"no ancestor of {held_sweep['session']} is private"
    token = held_sweep["token_stat"]
    assert stat.S_IMODE(token.st_mode) == 0o600 and token.st_uid == uid
    assert not held_sweep["token"].exists(), "the token outlived its Ray"


def test_cwd_modules_do_not_shadow_the_stdlib_in_ray(held_sweep):
    assert held_sweep["imported"] == [], held_sweep["imported"]
    ok = pl.read_parquet(held_sweep["results"] / "default" / "runs.parquet")
    assert ok.filter(pl.col("status") == "ok").height >= 2  # runs wrote yaml, parquet, numpy


def test_a_dead_raylet_ends_the_sweep_with_its_table_and_summary(held_sweep):
    assert held_sweep["returncode"] == 1, held_sweep["err"][-2000:]
    df = pl.read_parquet(held_sweep["results"] / "default" / "runs.parquet")
    assert df.height == 6
    failed = df.filter(pl.col("status") == "failed")
    assert failed.height >= 1 and all("Ray stopped" in e for e in failed["error"])
    assert "6 runs:" in held_sweep["err"] and f"{failed.height} failed" in held_sweep["err"]
