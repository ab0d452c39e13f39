"""``disco ray up`` / ``down`` / ``status``: a local Ray cluster for interactive work.

Locked down like a sweep's private Ray (``ray_local``: a fresh token in a 0600 file in a 0700
folder, every port on 127.0.0.1 and kernel-chosen where Ray allows, a private temp dir), because
it *is* one: ``up`` starts a small detached process that starts a private local Ray exactly as a
sweep does, records it, and keeps it up until ``down``. Sweeps attach with ``ray.address=auto``
(``ray_backend.resolve_address`` reads the record, and the attach takes the recorded token); an
attached sweep only disconnects when it ends.

The record is ``cluster.json`` in ``<tmp>/disco-ray-<uid>`` (``ray_local.private_dir``), read
only if that folder is private and the file is a regular 0600 file of this user. ``down`` stops
that cluster alone: its holder (SIGTERM, it shuts Ray down), then every process still carrying
its ``DISCO_RAY_SESSION`` marker (``reaper.kill_marked``); never ``ray stop``, which would kill
every Ray of the user (a sweep's private one included). The holder has a reaper of its own, so
a ``kill -9`` of it takes its Ray down too; ``status`` then says the record is stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from disco.framework import ray_local

RECORD = "cluster.json"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


class ClusterError(RuntimeError):
    """The record or its folder cannot be trusted, or the cluster would not start."""


@dataclass(slots=True)
class Record:
    pid: int  # the holder: the process whose ray.init started the cluster
    start: str  # its start time (/proc/<pid>/stat field 22): a recycled pid is not it
    address: str  # the GCS, 127.0.0.1:<port>
    cpus: int
    marker: str  # DISCO_RAY_SESSION of every process of this cluster
    token_path: str
    cleanup: str  # the token's folder, removed by down
    python: str  # the interpreter its workers run
    started_at: str


def home() -> Path:
    """``<tmp>/disco-ray-<uid>``; a ClusterError if it is not private (the record would not
    be found again by the next command, or could be someone else's)."""
    path, fresh = ray_local.private_dir()
    if fresh:
        shutil.rmtree(path, ignore_errors=True)
        standard = path.parent / f"disco-ray-{os.getuid()}"
        why = ray_local.not_private(standard)
        raise ClusterError(f"{standard}: {why}; it holds the cluster's record and must be a "
                           "folder only you can enter (chmod 700)")
    return path


def recorded() -> Record | None:
    """What a sweep's ``ray.address`` finds: the record, or None if there is none or its
    folder is not private (nothing there is trusted; the ``disco ray`` commands say why)."""
    path, fresh = ray_local.private_dir()
    if fresh:
        shutil.rmtree(path, ignore_errors=True)
        return None
    return read_record(path)


def start_time(pid: int) -> str | None:
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = line[line.rfind(")") + 2:].split()
    return None if fields[0] == "Z" else fields[19]


def read_record(where: Path | None = None) -> Record | None:
    """The recorded cluster, or None; a ClusterError if the file is not a 0600 file of ours."""
    path = (where or home()) / RECORD
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClusterError(f"{path}: {exc.strerror}") from None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() \
                or stat.S_IMODE(st.st_mode) != 0o600:
            raise ClusterError(f"{path}: not a 0600 file of yours; remove it")
        try:
            return Record(**json.load(f))
        except (ValueError, TypeError) as exc:
            raise ClusterError(f"{path}: unreadable ({exc}); remove it") from None


def alive(rec: Record) -> bool:
    """Is the recorded holder still running (same pid, same start time)?"""
    return start_time(rec.pid) == rec.start


def trusted_token(rec: Record) -> Path:
    """The recorded token file, if it is a 0600 file of ours in a private folder."""
    path = Path(rec.token_path)
    why = ray_local.not_private(path.parent)
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise ClusterError(f"the cluster's token {path}: {exc.strerror}") from None
    if why or not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() \
            or stat.S_IMODE(st.st_mode) != 0o600:
        raise ClusterError(f"the cluster's token {path} is not a 0600 file of yours in a "
                           f"private folder ({why or 'file'}); `disco ray down`")
    return path


def _write_record(where: Path, rec: Record) -> None:
    tmp = where / f".{RECORD}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(rec), f)
    os.replace(tmp, where / RECORD)


def _forget(where: Path, rec: Record) -> None:
    """Remove the record if it is still this one's, and its token's folder."""
    with contextlib.suppress(ClusterError):
        now = read_record(where)
        if now is not None and now.pid == rec.pid and now.start == rec.start:
            (where / RECORD).unlink(missing_ok=True)
    shutil.rmtree(rec.cleanup, ignore_errors=True)


@contextlib.contextmanager
def _locked(where: Path) -> Any:
    """One ``up`` / ``down`` at a time (a second ``up`` waits, then finds the first)."""
    import fcntl

    fd = os.open(where / "cluster.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _stop(rec: Record) -> int:
    """Stop the holder (it shuts its Ray down), then whatever of its session is left; how many
    processes had to be killed."""
    from disco.framework.reaper import kill, marked

    if alive(rec):
        os.kill(rec.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while alive(rec) and time.monotonic() < deadline:
            time.sleep(0.1)
    killed = 0
    for _ in range(20):  # a dying raylet may still fork
        found = marked(rec.marker)
        if alive(rec):
            found[rec.pid] = rec.start
        n = kill(found)
        if not n:
            break
        killed += n
        time.sleep(0.1)
    return killed


# --- the commands --------------------------------------------------------------------------

def up(num_cpus: int | None, out: Any = sys.stdout, err: Any = sys.stderr) -> int:
    where = home()
    with _locked(where):
        rec = read_record(where)
        if rec is not None and alive(rec):
            print(f"disco ray up: a cluster is already up at {rec.address} ({rec.cpus} CPUs, "
                  f"pid {rec.pid}); `disco ray down` stops it", file=err)
            return 1
        if rec is not None:
            _stop(rec)
            _forget(where, rec)
            print(f"disco ray up: removed the stale record of a cluster that is gone "
                  f"({rec.address}, pid {rec.pid})", file=err)
        log = where / "cluster.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        env = {k: v for k, v in os.environ.items() if k != ray_local.SESSION_ENV}
        cmd = [sys.executable, "-P", "-m", "disco.framework.ray_cluster", "serve",
               str(num_cpus or 0)]
        with os.fdopen(fd, "w") as logf:
            proc = subprocess.Popen(cmd, cwd=where, env=env, stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=logf, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(ClusterError):
                rec = read_record(where)
            if rec is not None and rec.pid == proc.pid:
                print(f"disco ray up: a local Ray at {rec.address}, {rec.cpus} CPUs "
                      f"(pid {rec.pid}); sweeps attach with ray.address=auto; "
                      "`disco ray down` stops it", file=out)
                return 0
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=STOP_TIMEOUT_S)
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        print(f"disco ray up: Ray did not start: {tail[0]} (the whole log: {log})", file=err)
        return 1


def down(out: Any = sys.stdout, err: Any = sys.stderr) -> int:
    where = home()
    with _locked(where):
        rec = read_record(where)
        if rec is None:
            print("disco ray down: no cluster is up (`disco ray up` starts one)", file=err)
            return 1
        was_up = alive(rec)
        killed = _stop(rec)
        _forget(where, rec)
    if was_up:
        print(f"disco ray down: stopped the local Ray at {rec.address} (pid {rec.pid})",
              file=out)
    else:
        print(f"disco ray down: the recorded cluster at {rec.address} (pid {rec.pid}) was "
              f"already gone; removed its record ({killed} leftover processes killed)", file=out)
    return 0


def status(out: Any = sys.stdout, err: Any = sys.stderr) -> int:
    rec = read_record()
    if rec is None:
        print("disco ray status: no cluster is up (`disco ray up` starts one)", file=out)
        return 1
    if not alive(rec):
        print(f"disco ray status: stale: the recorded cluster at {rec.address} (pid {rec.pid}, "
              f"started {rec.started_at}) is not running; `disco ray down` removes the record",
              file=out)
        return 1
    print(f"disco ray status: up at {rec.address}, {rec.cpus} CPUs, pid {rec.pid}, started "
          f"{rec.started_at}; sweeps attach with ray.address=auto", file=out)
    return 0


def main(argv: list[str]) -> int:
    """``disco ray <up|down|status>``."""
    import argparse

    p = argparse.ArgumentParser(
        prog="disco ray", allow_abbrev=False,
        description="A local Ray cluster for interactive work (loopback only, token auth); "
                    "sweeps attach to it with ray.address=auto.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{up,down,status}")
    u = sub.add_parser("up", help="start the cluster")
    u.add_argument("--num-cpus", type=int, default=None, metavar="N",
                   help="CPUs it offers (default: this machine's)")
    sub.add_parser("down", help="stop the cluster (only the one `up` started)")
    sub.add_parser("status", help="is it up, where, how many CPUs")

    def error(message: str) -> Any:
        p.exit(2, f"disco ray: error: {message}\n")

    p.error = error  # type: ignore[method-assign]
    for s in sub.choices.values():
        s.error = error  # type: ignore[method-assign]
    args = p.parse_args(argv)
    if args.command == "up" and args.num_cpus is not None and args.num_cpus < 1:
        print(f"disco ray: error: --num-cpus {args.num_cpus}: expected at least 1",
              file=sys.stderr)
        return 2
    try:
        if args.command == "up":
            return up(args.num_cpus)
        if args.command == "down":
            return down()
        return status()
    except ClusterError as exc:
        print(f"disco ray {args.command}: error: {exc}", file=sys.stderr)
        return 2


# --- the holder ----------------------------------------------------------------------------

def serve(num_cpus: int) -> int:
    """The detached holder: start a private local Ray, record it, keep it up until SIGTERM
    (or its raylet dies), then shut it down and remove the record."""
    from disco.framework import ray_backend
    from disco.framework.compose import project_root
    from disco.framework.reaper import Reaper

    where = home()
    cfg: dict[str, Any] = {"address": "local", "num_cpus": num_cpus or None}
    session = ray_backend.local_session(cfg)
    reaper = Reaper(session.marker, session.cleanup_path)
    stopping: list[int] = []
    rec: Record | None = None
    try:
        ray_backend.init(cfg, project_root(), session)  # imports ray, its environment set
        import ray

        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
        signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
        rec = Record(pid=os.getpid(), start=start_time(os.getpid()) or "",
                     address=ray.get_runtime_context().gcs_address,
                     cpus=ray_backend.cluster_cpus(), marker=session.marker,
                     token_path=str(session.token_path), cleanup=str(session.cleanup_path),
                     python=sys.executable,
                     started_at=datetime.now(UTC).isoformat(timespec="seconds"))
        _write_record(where, rec)
        raylet = session.raylet
        while not stopping:
            if raylet is not None and not ray_local.alive(raylet):
                print(f"its raylet (pid {raylet}) died: stopping", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        with contextlib.suppress(Exception):
            ray_backend.shutdown()
        reaper.close()
        if rec is not None:
            _forget(where, rec)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        sys.exit(serve(int(sys.argv[2])))
    sys.exit(main(sys.argv[1:]))
