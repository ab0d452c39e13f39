"""``disco ray up`` / ``status`` / ``down``: a local cluster that sweeps attach to with
``ray.address=auto``, locked down like a sweep's private Ray, and stopped alone by ``down``.

One cluster is started for the module (in a temp dir of its own: ``$TMPDIR`` is where its record
lives); the tests run in file order and the last one stops it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from framework_helpers import ports
from framework_helpers.common import FAST, ROOT, env, metric_columns, runs_table

from disco.framework import reaper


def _disco(home: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    extra = {"TMPDIR": str(home), "RAY_TMPDIR": str(home / "raytmp"), "RAY_ADDRESS": ""}
    return subprocess.run([sys.executable, "-m", "disco.cli", *args], cwd=cwd,
                          env={**env(), **extra}, capture_output=True, text=True, timeout=180)


def _record(home: Path) -> dict:
    return json.loads((home / f"disco-ray-{os.getuid()}" / "cluster.json").read_text())


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def home():
    # short: Ray's unix sockets live below it
    path = Path(tempfile.mkdtemp(prefix="dr", dir="/tmp"))
    yield path
    if (path / f"disco-ray-{os.getuid()}" / "cluster.json").exists():
        _disco(path, "ray", "down")


def test_status_and_down_without_a_cluster_say_so(home):
    st = _disco(home, "ray", "status")
    assert st.returncode == 1 and "no cluster is up" in st.stdout, st
    down = _disco(home, "ray", "down")
    assert down.returncode == 1 and "no cluster is up" in down.stderr, down
    bad = _disco(home, "ray", "sideways")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad
    bad = _disco(home, "ray", "up", "--num-cpus", "0")
    assert bad.returncode == 2 and "--num-cpus 0" in bad.stderr, bad


def test_up_starts_a_cluster_status_reports_and_a_second_up_is_refused(home):
    up = _disco(home, "ray", "up", "--num-cpus", "2")
    assert up.returncode == 0, up.stderr
    rec = _record(home)
    assert rec["address"].startswith("127.0.0.1:") and rec["address"] in up.stdout
    st = _disco(home, "ray", "status")
    assert st.returncode == 0, st
    assert f"up at {rec['address']}, 2 CPUs" in st.stdout
    again = _disco(home, "ray", "up")
    assert again.returncode == 1 and "already up" in again.stderr, again
    assert _record(home)["pid"] == rec["pid"]


def test_the_cluster_listens_on_loopback_only_and_refuses_requests_without_its_token(home):
    rec = _record(home)
    pids = {rec["pid"], *reaper.marked(rec["marker"])}
    names = {pid: ports.name(pid) for pid in pids}
    assert any("gcs_server" in n for n in names.values()), names
    listening = ports.listening(pids)
    assert len(listening) >= 4, listening
    assert {addr for addr, _, _ in listening} == {"127.0.0.1"}, listening
    assert not {52365, 44217, 44227} & {port for _, port, _ in listening}
    gcs = [p for _, p, pid in listening if "gcs_server" in names[pid]]
    assert gcs and all(ports.grpc_codes(p)["/ray.rpc.NodeInfoGcsService/GetClusterId"]
                       == "UNAUTHENTICATED" for p in gcs)
    raylet = [p for _, p, pid in listening if "raylet/raylet" in names[pid]]
    assert any(ports.grpc_codes(p)["/ray.rpc.NodeManagerService/GetNodeStats"]
               == "UNAUTHENTICATED" for p in raylet)
    # a job submitted over HTTP to every port: none accepts it (the agents' job API, when it
    # listens, says 401; the metrics exporters, 405), and nothing runs
    marker = Path(tempfile.mkdtemp()) / "job-ran"
    answers = [ports.post_job(p, marker) for _, p, _ in listening]
    assert not [a for a in answers if a.startswith("HTTP 2")], answers
    assert set(answers) & {"HTTP 401", "HTTP 405"}, answers
    time.sleep(0.5)
    assert not marker.exists()
    token = Path(rec["token_path"])
    assert (token.stat().st_mode & 0o777) == 0o600
    assert (token.parent.stat().st_mode & 0o777) == 0o700


def test_a_sweep_attached_with_address_auto_matches_serial_and_leaves_the_cluster_up(home,
                                                                                   tmp_path):
    rec = _record(home)
    args = ["-m", *FAST, "sim.replicates=3", "sweep.progress=false"]
    serial = _disco(home, *args, f"results_dir={tmp_path / 's'}", "sweep.serial=true")
    assert serial.returncode == 0, serial.stderr
    attached = _disco(home, *args, f"results_dir={tmp_path / 'a'}", "ray.address=auto")
    assert attached.returncode == 0, attached.stderr
    assert f"Connecting to existing Ray cluster at address: {rec['address']}" in attached.stderr
    a, s = runs_table(tmp_path / "a").sort("key"), runs_table(tmp_path / "s").sort("key")
    cols = metric_columns(s)
    assert a.height == 3 and a.select(cols).equals(s.select(cols))
    assert _alive(rec["pid"]) and _disco(home, "ray", "status").returncode == 0


def test_down_stops_only_its_own_cluster(home, tmp_path):
    rec = _record(home)
    ours = {rec["pid"], *reaper.marked(rec["marker"])}
    assert len(ours) >= 4
    # a process of another session (another sweep's private Ray) and one of none
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={**os.environ, "DISCO_RAY_SESSION": "another-session"})
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        down = _disco(home, "ray", "down")
        assert down.returncode == 0 and "stopped" in down.stdout, down
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in ours):
            time.sleep(0.1)
        assert not [p for p in ours if _alive(p)]
        assert other.poll() is None and plain.poll() is None
        assert not Path(rec["token_path"]).exists()
        st = _disco(home, "ray", "status")
        assert st.returncode == 1 and "no cluster is up" in st.stdout
    finally:
        other.kill()
        plain.kill()


def test_a_record_of_a_dead_cluster_is_reported_stale_and_down_removes_it(tmp_path):
    home = Path(tempfile.mkdtemp(prefix="dr", dir="/tmp"))
    where = home / f"disco-ray-{os.getuid()}"
    where.mkdir(mode=0o700)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    rec = {"pid": gone.pid, "start": "1", "address": "127.0.0.1:9", "cpus": 2,
           "marker": "no-such-session", "token_path": str(where / "auth" / "token"),
           "cleanup": str(where / "auth"), "python": sys.executable,
           "started_at": "2026-01-01T00:00:00+00:00"}
    fd = os.open(where / "cluster.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(rec, f)
    st = _disco(home, "ray", "status")
    assert st.returncode == 1 and "stale" in st.stdout and "127.0.0.1:9" in st.stdout, st
    auto = _disco(home, "-m", *FAST, f"results_dir={tmp_path}", "ray.address=auto")
    assert auto.returncode == 2 and "stale" in auto.stderr, auto.stderr
    assert len(auto.stderr.strip().splitlines()) == 1
    down = _disco(home, "ray", "down")
    assert down.returncode == 0 and "already gone" in down.stdout, down
    assert not (where / "cluster.json").exists()
    os.chmod(where, 0o755)  # a record folder others can enter is not trusted
    assert _disco(home, "ray", "status").returncode == 2
