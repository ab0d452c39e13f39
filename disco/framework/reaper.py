"""Stop a private local Ray's processes if the driver is killed with SIGKILL.

``ray.init(address="local")`` ties the GCS and raylet to the driver, but on Ray 2.60 the raylet's
own agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) survive a ``kill -9`` of the
driver, orphaned. This watcher is a small child process holding the read end of a pipe from the
driver. Every second it records the driver's process tree; when the pipe closes without the
driver's "done" (the driver died), it SIGKILLs what it recorded that is still alive (checked by
pid *and* start time, so a recycled pid is never hit), and every process of this user whose
environment carries this Ray's ``DISCO_RAY_SESSION`` marker (``ray_local``): those started after
its last sample, which a sample a second misses. It then removes the Ray's token. Linux only
(/proc); elsewhere a no-op.

Run as ``python -P -m disco.framework.reaper <driver_pid> [<marker> <folder to remove>]``.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

_DONE = b"done\n"


def _table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, start time) for every process we can see."""
    out: dict[int, tuple[int, str]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        out[int(d.name)] = (int(fields[1]), fields[19])
    return out


def _descendants(root: int, table: dict[int, tuple[int, str]]) -> dict[int, str]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid in found or pid == os.getpid():
            continue
        found[pid] = table[pid][1]
        stack += children.get(pid, [])
    return found


def marked(marker: str) -> dict[int, str]:
    """pid -> start time of every process of ours whose environment has the session marker."""
    needle = f"DISCO_RAY_SESSION={marker}".encode()
    out: dict[int, str] = {}
    table = _table()
    for pid in table:
        if pid == os.getpid():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in env.split(b"\0"):
            out[pid] = table[pid][1]
    return out


def kill(found: dict[int, str]) -> int:
    """SIGKILL each pid still running with the start time it had when found; how many."""
    table = _table()
    killed = 0
    for pid, start in found.items():
        if pid in table and table[pid][1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def kill_marked(marker: str) -> None:
    """Kill every process of this Ray's session (a dying raylet may still fork: a few rounds)."""
    for _ in range(20):
        if not kill(marked(marker)):
            return
        time.sleep(0.1)


def watch(driver: int, fd: int = 0, marker: str | None = None,
          cleanup: str | None = None) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the driver, which cleans up
    seen: dict[int, str] = {}
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 64)
            buf += chunk
            if _DONE in buf:
                return 0
            if not chunk:  # EOF without "done": the driver is gone
                break
        seen.update(_descendants(driver, _table()))
    kill(seen)
    if marker:
        kill_marked(marker)
    if cleanup:
        shutil.rmtree(cleanup, ignore_errors=True)
    return 1


class Reaper:
    """Driver side: start the watcher before ``ray.init``; ``close()`` after ``ray.shutdown``."""

    def __init__(self, marker: str | None = None, cleanup: Path | None = None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if sys.platform.startswith("linux"):
            extra = [marker, str(cleanup or "")] if marker else []
            env = {k: v for k, v in os.environ.items() if k != "DISCO_RAY_SESSION"}
            # -P: not the working directory first on its path (its imports are the stdlib's)
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "disco.framework.reaper", str(os.getpid()), *extra],
                stdin=subprocess.PIPE, start_new_session=True, env=env)

    def close(self) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(_DONE)
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.proc = None


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(watch(int(args[0]), marker=args[1] if len(args) > 1 else None,
                   cleanup=args[2] if len(args) > 2 and args[2] else None))
