"""Attaching to a Ray that is not there fails fast: exit 2 naming the address, in seconds, and
a signal while Ray starts ends the process promptly. No cluster is started here."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest
from framework_helpers.common import FAST, disco_subprocess

LIMIT_S = 10.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def _attach(tmp_path, *args, extra_env=None):
    env = {"RAY_TMPDIR": str(tmp_path / "raytmp"), "RAY_ADDRESS": "", **(extra_env or {})}
    t0 = time.monotonic()
    proc = disco_subprocess("-m", *FAST, f"results_dir={tmp_path / 'results'}",
                            "sim.replicates=2", *args, extra_env=env)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - t0


def test_unreachable_ray_address_exits_2_quickly(tmp_path):
    port = _closed_port()
    rc, err, took = _attach(tmp_path, f"ray.address=127.0.0.1:{port}")
    assert rc == 2, err
    assert took < LIMIT_S
    assert f"127.0.0.1:{port}" in err and "connection refused" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists()


def test_stale_cluster_file_with_address_auto_exits_2_quickly(tmp_path):
    """``ray start`` writes the address to ``$RAY_TMPDIR/ray/ray_current_cluster`` (Ray 2.x);
    a cluster that is gone leaves it behind."""
    port = _closed_port()
    stale = tmp_path / "raytmp" / "ray" / "ray_current_cluster"
    stale.parent.mkdir(parents=True)
    stale.write_text(f"127.0.0.1:{port}\n")
    rc, err, took = _attach(tmp_path, "ray.address=auto")
    assert rc == 2 and took < LIMIT_S, err
    assert f"127.0.0.1:{port}" in err and str(stale) in err and "stale" in err
    stale.unlink()
    rc, err, took = _attach(tmp_path, "ray.address=auto")  # no cluster at all
    assert rc == 2 and took < LIMIT_S and "ray start --head" in err, err


class _SilentServer:
    """Accepts TCP connections and never answers: a GCS port that hangs Ray's connect."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_attaching_ends_the_process_promptly(tmp_path, sig):
    server = _SilentServer()
    try:
        proc = disco_subprocess("-m", *FAST, f"results_dir={tmp_path / 'results'}",
                                f"ray.address=127.0.0.1:{server.port}",
                                extra_env={"RAY_ADDRESS": ""})
        deadline = time.monotonic() + 30
        # The probe connects once; Ray's own connect attempts follow inside ray.init.
        while len(server.accepted) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.accepted) >= 2, "disco should be inside ray.init by now"
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        server.close()
    assert took < 2.0, f"{sig.name} took {took:.1f} s"
    assert proc.returncode == 128 + sig
