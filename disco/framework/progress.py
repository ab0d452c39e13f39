"""A sweep's progress on stderr, with tqdm: bar, percentage, runs/s and an ETA.

- The ETA is tqdm's exponential moving average of the rate, and its clock starts at the first
  finished run: Ray's start (~5 s, shown as "starting Ray...") and the imports of the first
  batch would otherwise make early estimates several times too long.
- Runs that were already complete are the bar's initial count, not part of the rate.
- A failed run is printed as it happens, above the bar, with the path of its ``error.txt``.
- On a terminal the bar redraws in place; in a notebook it is tqdm's widget (``tqdm.auto``);
  into a file or pipe it is a plain line every ``PLAIN_EVERY_S`` seconds, so logs stay readable.
- While the bar is up, lines that Python code (Ray's log monitor, the logging module) writes to
  stdout or stderr are printed above the bar instead of through it (``bar_safe_output``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

PLAIN_EVERY_S = 5.0
# Off a terminal, "starting Ray..." is printed only if the start takes longer than this: an
# address that is refused at once gives its one error line and nothing else.
PLAIN_START_AFTER_S = 1.0
_BAR = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
        "[{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]")
_PLAIN = ("{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} "
          "[{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]")


def _notebook() -> bool:
    from tqdm.auto import tqdm as auto

    return any(c.__module__ == "tqdm.notebook" for c in auto.__mro__)


def _width(stream: TextIO) -> int | None:
    """None: follow the terminal's width; a fixed 100 if it reports none (some ptys say 0)."""
    try:
        cols = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return None if cols > 0 else 100


class _Sink(io.StringIO):
    """Where the hidden bar of the plain mode draws (its numbers are printed every few s)."""

    def write(self, s: str) -> int:
        return len(s)


class Progress:
    """``add`` per finished run, ``starting`` before the first, ``close`` at the end."""

    def __init__(self, label: str, total: int, skipped: int, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.label, self.total, self.skipped = label, total, skipped
        self.done = self.failed = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._finished_at: float | None = None
        self._last_plain = 0.0
        self._last_state: tuple[Any, ...] = ()
        self._timer: threading.Timer | None = None
        self.bar: Any = None
        if not enabled:
            self.mode = "off"
            return
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.mode = "notebook" if _notebook() else "tty" if tty else "plain"
        if self.mode == "notebook":
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
        width = _width(self.stream) if self.mode == "tty" else None
        self.bar = tqdm(
            total=total, initial=skipped, desc=f"[disco] {label}", unit=" runs",
            smoothing=0.3, mininterval=0.2, leave=True,
            dynamic_ncols=width is None, ncols=width,
            bar_format=_BAR, file=_Sink() if self.mode == "plain" else self.stream)
        if skipped:
            self.bar.set_postfix_str(f"{skipped} cached", refresh=False)

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done - self.failed

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def starting(self, what: str) -> None:
        """Say what happens before the first run finishes (``starting Ray...``)."""
        if self.bar is None:
            return
        self.bar.set_postfix_str(what, refresh=self.mode != "plain")
        if self.mode == "plain":
            self._cancel_timer()
            self._timer = threading.Timer(PLAIN_START_AFTER_S, self._plain, kwargs={"force": True})
            self._timer.daemon = True
            self._timer.start()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def add(self, status: str, key: str | None = None, error_file: Path | None = None,
            detail: str = "", error: str | None = None) -> None:
        """One finished run; a failure is printed at once (even with the bar off): its key,
        what the plan says about it, the last line of its error and where the whole is."""
        if status == "ok":
            self.done += 1
        else:
            self.failed += 1
            last = (error or "").strip().splitlines()[-1:] or ["?"]
            where = f" -> {error_file}" if error_file else ""
            self.write(f"FAILED {key or ''}{f' ({detail})' if detail else ''}: {last[0]}{where}")
        if self.bar is None:
            return
        self._cancel_timer()
        if self._finished_at is None:
            # The clock starts now: elapsed, rate and ETA ignore Ray's start and this first
            # run (``unpause`` moves the start to now; no rate sample has been taken yet).
            self._finished_at = time.monotonic()
            self.bar.n += 1
            self.bar.initial = self.bar.last_print_n = self.bar.n
            self.bar.unpause()
            self.bar.set_postfix_str(self._postfix(), refresh=True)
        else:
            self.bar.set_postfix_str(self._postfix(), refresh=False)
            self.bar.update(1)
        if self.mode == "plain":
            self._plain()

    def _postfix(self) -> str:
        parts = [f"{self.skipped} cached"] if self.skipped else []
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)

    def tick(self) -> None:
        """Called while waiting: keeps the elapsed time moving and the plain line coming."""
        if self.bar is None:
            return
        if self.mode == "plain":
            self._plain()
        else:
            self.bar.refresh()

    def _plain(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_plain < PLAIN_EVERY_S:
            return
        state = (self.bar.n, self.bar.postfix)
        if force and state == self._last_state:
            return  # nothing new since the last line
        self._last_plain, self._last_state = now, state
        d = dict(self.bar.format_dict)
        d.update(bar_format=_PLAIN, ncols=None)
        self.stream.write(self.bar.format_meter(**d) + "\n")
        self.stream.flush()

    def write(self, line: str, target: TextIO | None = None) -> None:
        """A line above the bar (the bar is cleared, the line printed, the bar redrawn)."""
        target = target or self.stream
        bar = self.bar
        if bar is None or self.mode != "tty":
            target.write(line + "\n")
            target.flush()
            return
        with bar.get_lock():
            bar.clear(nolock=True)
            target.write(line + "\n")
            target.flush()
            bar.refresh(nolock=True)

    def close(self) -> None:
        """The final state; a bar on which no run finished (all cached, or Ray could not
        start) is removed: the summary or the error that follows says it all."""
        if self.bar is None:
            return
        self._cancel_timer()
        if self.finished == 0:
            self.bar.leave = False
        elif self.mode == "plain":
            self._plain(force=True)
        self.bar.close()
        self.bar = None

    @contextlib.contextmanager
    def bar_safe_output(self) -> Iterator[None]:
        """Route Python-level writes to stdout/stderr (and the ``ray`` loggers) above the bar."""
        if self.mode != "tty":
            yield
            return
        out, err = sys.stdout, sys.stderr
        proxies = {id(out): _AboveBar(self, out), id(err): _AboveBar(self, err)}
        sys.stdout, sys.stderr = proxies[id(out)], proxies[id(err)]
        # Log handlers that write to the console (Ray's) hold the stream itself: point them
        # at the proxies too, for as long as the bar is up.
        moved = []
        loggers = [logging.root, *(lg for lg in logging.root.manager.loggerDict.values()
                                   if isinstance(lg, logging.Logger))]
        for lg in loggers:
            for h in lg.handlers:
                if type(h) is logging.StreamHandler or (
                        isinstance(h, logging.StreamHandler)
                        and not isinstance(h, logging.FileHandler)):
                    proxy = proxies.get(id(h.stream))
                    if proxy is not None:
                        moved.append((h, h.setStream(proxy)))  # type: ignore[arg-type]
        try:
            yield
        finally:
            for h, old in moved:
                h.setStream(old)
            for proxy in proxies.values():
                proxy.flush_partial()
            sys.stdout, sys.stderr = out, err


class _AboveBar(io.TextIOBase):
    """A text stream whose complete lines go through ``tqdm.write`` (clear, print, redraw)."""

    def __init__(self, progress: Progress, target: TextIO) -> None:
        self._progress, self._target, self._buf = progress, target, ""

    def write(self, s: str) -> int:
        self._buf += s
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self._progress.write(line, self._target)
        return len(s)

    def flush_partial(self) -> None:
        if self._buf:
            self._target.write(self._buf)
            self._buf = ""
        self._target.flush()

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return bool(self._target.isatty())

    def fileno(self) -> int:
        return self._target.fileno()
