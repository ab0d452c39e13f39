"""A serial sweep's runs, in a child process: a run that hangs, exits or is killed costs only
itself.

The driver keeps one child (``python -P -m disco.framework.isolate``: no working directory on
its path) and sends it the runs one after another over a pipe; the child runs each with the
same ``execute.run_one`` as a Ray worker and answers with its summary. A run that does not
answer within ``sweep.run_timeout_s`` gets its child's whole process group killed; a run whose
child dies (``os._exit``, a segfault, SIGKILL) is recorded failed the same way, and the next
run gets a new child. The child is started once per sweep, not per run: each run costs a
pickled config and a summary through a pipe.

Why not ``fork``: the driver has loaded polars, whose thread pool does not survive a fork.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from typing import Any, BinaryIO

from disco.framework.execute import RunContext, RunSpec, RunSummary, record_lost

_HEADER = struct.Struct("!Q")


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes | None:
    """``n`` bytes from ``fd``, or None at EOF; TimeoutError past ``deadline``."""
    out = bytearray()
    while len(out) < n:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, n - len(out))
        if not chunk:
            return None
        out += chunk
    return bytes(out)


def _receive(fd: int, deadline: float | None = None) -> Any:
    head = _read_exactly(fd, _HEADER.size, deadline)
    if head is None:
        return None
    body = _read_exactly(fd, _HEADER.unpack(head)[0], deadline)
    return None if body is None else pickle.loads(body)


class Isolated:
    """Driver side: ``run(spec)`` in the child, with the timeout; ``close()`` at the end."""

    def __init__(self, ctx: RunContext, timeout_s: float | None) -> None:
        self.ctx = ctx
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start a child (its imports overlap the driver's next steps)."""
        if self.proc is None:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "disco.framework.isolate", str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)

    def run(self, spec: RunSpec) -> RunSummary:
        self.start()
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        try:
            _send(proc.stdin, (spec, self.ctx))
            summary = _receive(proc.stdout.fileno(), deadline)
        except TimeoutError:
            self._kill()
            return record_lost(spec, self.ctx, f"timed out: still running after "
                               f"{self.timeout_s:g} s (sweep.run_timeout_s)", keep_finished=False)
        except (BrokenPipeError, ConnectionResetError):
            summary = None
        except BaseException:  # Ctrl-C: the run stops with the sweep
            self._kill()
            raise
        if isinstance(summary, BaseException):  # the disk is full: the sweep stops
            raise summary
        if summary is None:  # the child died during the run
            code = self._kill()
            how = f"killed by signal {signal.Signals(-code).name}" if code and code < 0 else \
                f"exited with code {code}"
            return record_lost(spec, self.ctx, f"the run's process {how} (serial sweep: the "
                               "sweep goes on)")
        return summary

    def _kill(self) -> int | None:
        """Kill the child's process group (a task's own subprocesses too); its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        code = proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        return code

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        try:
            proc.stdin.close()  # EOF: the child exits
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc = proc
            self._kill()
        if proc.stdout is not None:
            proc.stdout.close()


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this child when the driver dies (a SIGKILLed driver leaves no run going)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(0)


def main(parent: int) -> int:
    from disco.framework import results
    from disco.framework.execute import run_one

    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what a task prints goes to stderr, not into the answers
    requests = sys.stdin.buffer.fileno()
    while True:
        msg = _receive(requests)
        if msg is None:
            return 0
        spec, ctx = msg
        try:
            summary: Any = run_one(spec, ctx)
        except results.WriteError as exc:
            summary = exc
        _send(answers, summary)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
