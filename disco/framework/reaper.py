"""Stop a private local Ray's processes if the driver is killed with SIGKILL.

``ray.init(address="local")`` ties the GCS and raylet to the driver, but on Ray 2.60 the raylet's
own agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) survive a ``kill -9`` of the
driver, orphaned. This watcher is a small child process holding the read end of a pipe from the
driver. Every second it records the driver's process tree; when the pipe closes without the
driver's "done" (the driver died), it SIGKILLs what it recorded that is still alive (checked by
pid *and* start time, so a recycled pid is never hit). Linux only (/proc); elsewhere a no-op.

Run as ``python -m disco.framework.reaper <driver_pid>``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
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


def watch(driver: int, fd: int = 0) -> int:
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
    table = _table()
    for pid, start in seen.items():
        if pid in table and table[pid][1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return 1


class Reaper:
    """Driver side: start the watcher before ``ray.init``; ``close()`` after ``ray.shutdown``."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if sys.platform.startswith("linux"):
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "disco.framework.reaper", str(os.getpid())],
                stdin=subprocess.PIPE, start_new_session=True)

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
    sys.exit(watch(int(sys.argv[1])))
