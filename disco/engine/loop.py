"""A small discrete-event loop in the style of SimPy's core.

Time is a float in simulated **seconds** everywhere in disco. The heap holds plain tuples
``(time, seq, callback, args)``; ``seq`` is a global counter, so events at the same time run in
the order they were scheduled, which makes runs deterministic. Cancelling an event records its
``seq``; the loop drops it when it reaches the top of the heap (lazy deletion keeps ``cancel``
O(1) and the hot path free of per-event objects).

The hot loop does as little as a bare ``heapq`` loop: ``stop()`` pushes a sentinel that sorts
first and raises out of the loop, so no flag is tested per event, and the debug hook
(``after_event``, the invariant checker) has a loop of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from itertools import count
from typing import Any

_NEG_INF = float("-inf")


class _Halt(Exception):
    pass


def _halt() -> None:
    raise _Halt


class EventLoop:
    """Owns the clock and the heap; model code only calls ``schedule``/``at``/``cancel``."""

    __slots__ = ("now", "events", "_heap", "_next_seq", "_cancelled", "_stop_time",
                 "after_event")

    def __init__(self) -> None:
        self.now: float = 0.0
        self.events: int = 0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._next_seq = count().__next__
        self._cancelled: set[int] = set()
        self._stop_time: float | None = None
        # Debug hook run after every event (the invariant checker); None on the fast path.
        self.after_event: Callable[[], None] | None = None

    def schedule(self, delay: float, callback: Callable[..., Any], *args: Any) -> int:
        """Run ``callback(*args)`` after ``delay`` seconds; returns a handle for ``cancel``."""
        if delay < 0:
            raise ValueError(f"cannot schedule into the past (delay={delay})")
        seq = self._next_seq()
        heappush(self._heap, (self.now + delay, seq, callback, args))
        return seq

    def at(self, time: float, callback: Callable[..., Any], *args: Any) -> int:
        """Run ``callback(*args)`` at absolute ``time`` (not before now)."""
        if time < self.now:
            raise ValueError(f"cannot schedule into the past (time={time}, now={self.now})")
        seq = self._next_seq()
        heappush(self._heap, (time, seq, callback, args))
        return seq

    def cancel(self, handle: int | None) -> None:
        """Forget a scheduled event; cancelling twice or after it ran is harmless."""
        if handle is not None:
            self._cancelled.add(handle)

    def stop(self) -> None:
        """End ``run`` after the current event (e.g. when every VM has finished)."""
        if self._stop_time is None:
            self._stop_time = self.now
            heappush(self._heap, (_NEG_INF, -1, _halt, ()))

    @property
    def pending(self) -> int:
        return len(self._heap) - len(self._cancelled)

    def run(self, until: float) -> None:
        """Process events in time order until the clock would pass ``until`` or ``stop()``."""
        heap = self._heap
        cancelled = self._cancelled
        hook = self.after_event
        events = 0
        try:
            if hook is None:
                while heap:
                    event = heappop(heap)
                    time, seq, callback, args = event
                    if time > until:
                        heappush(heap, event)
                        break
                    if cancelled and seq in cancelled:
                        cancelled.discard(seq)
                        continue
                    self.now = time
                    events += 1
                    callback(*args)
            else:
                while heap:
                    event = heappop(heap)
                    time, seq, callback, args = event
                    if time > until:
                        heappush(heap, event)
                        break
                    if cancelled and seq in cancelled:
                        cancelled.discard(seq)
                        continue
                    self.now = time
                    events += 1
                    callback(*args)
                    hook()
            self.now = max(self.now, until)
        except _Halt:
            self.now = self._stop_time
            events -= 1  # the sentinel is not an event of the model
        finally:
            self.events += events
            self._stop_time = None
