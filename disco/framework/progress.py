"""The live line on stderr: done / skipped / failed / total and an ETA.

On a terminal the line is redrawn in place at most every 0.2 s; into a file or pipe it is
printed every 5 s, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, skipped: int, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.label, self.total, self.skipped = label, total, skipped
        self.done = self.failed = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._tty = self.stream.isatty()
        self._t0 = time.monotonic()
        self._last = 0.0
        self._min_gap = 0.2 if self._tty else 5.0

    def add(self, status: str) -> None:
        if status == "ok":
            self.done += 1
        else:
            self.failed += 1
        self.show()

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done - self.failed

    def line(self) -> str:
        elapsed = time.monotonic() - self._t0
        finished = self.done + self.failed
        if finished and self.remaining:
            eta = f"ETA {_fmt(elapsed / finished * self.remaining)}"
        elif not self.remaining:
            eta = f"in {_fmt(elapsed)}"
        else:
            eta = "ETA ?"
        return (f"[disco] {self.label}: {finished + self.skipped}/{self.total} "
                f"(done {self.done}, skipped {self.skipped}, failed {self.failed}) {eta}")

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self._min_gap:
            return
        self._last = now
        if self._tty:
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.show(force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
