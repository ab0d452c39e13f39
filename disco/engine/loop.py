"""A small discrete-event loop in the style of SimPy's core.

Time is a float in simulated **seconds** everywhere in disco. The heap holds ``Event`` objects
ordered by ``(time, seq)``; ``seq`` is a global counter, so events at the same time run in the
order they were scheduled, which makes runs deterministic. ``schedule`` returns the event itself
as the handle for ``cancel``, which marks it; the loop drops it when it reaches the top of the
heap (lazy deletion keeps ``cancel`` O(1)).

An event is one object holding its time and seq unboxed, not a tuple pointing at a float and an
int: compiled (disco.native), a heap step compares two native fields of two objects instead of
walking two tuples and their items through Python's generic comparison, each scheduled event is
one allocation instead of three (or four, with the seq's int), and a cancelled one is recognised
by a flag on the object just popped instead of a hash lookup. At 1024 CPUs, where the pending
events spread over far more memory than the caches hold, that is fewer objects to fetch as well.

The hot loop does as little as a bare ``heapq`` loop: the end of the run and ``stop()`` are
sentinel events that raise out of the loop, so no time or flag is tested per event; events are
counted once per ``run``, not per event (``events`` is current between runs); and the debug
hook (``after_event``, the invariant checker) has a loop of its own.

Zero-delay events (``soon``: a free CPU choosing what to run) are most of a run's events. They
go to a FIFO instead of the heap: scheduled at ``now`` with a rising ``seq``, the FIFO is already
in heap order, so the loop takes whichever of the two heads is smaller and the order of events
is exactly the heap's, without the heap's O(log n) push and pop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from heapq import heapify, heappop, heappush
from typing import Any, Final

_NEG_INF: Final = float("-inf")  # Final: inlined when compiled (see vmm/state.py)
_AFTER_ALL: Final = 1 << 62  # seq of the end sentinel: after every event at the same time
_QUEUED: Final = 0
_CANCELLED: Final = 1
_RAN: Final = 2


class Event:
    """A scheduled ``callback(*args)`` at ``time``; opaque to model code (a ``Handle``)."""

    __slots__ = ("time", "seq", "callback", "args", "state")

    def __init__(self, time: float, seq: int, callback: Callable[..., Any], args: tuple) -> None:
        self.time = time
        self.seq = seq
        self.callback = callback
        self.args = args
        self.state = _QUEUED

    def __lt__(self, other: Event) -> bool:
        # seq is unique: no two events are equal, so heap order is total and deterministic.
        return self.time < other.time or (self.time == other.time and self.seq < other.seq)


# What ``schedule``/``soon``/``at`` return for ``cancel``.
Handle = Event


class _Halt(Exception):
    pass


def _halt() -> None:
    raise _Halt


class EventLoop:
    """Owns the clock and the heap; model code only calls ``schedule``/``at``/``cancel``."""

    __slots__ = ("now", "events", "_heap", "_soon", "_seq", "_cancelled", "_stop_time",
                 "_compacted", "after_event")

    def __init__(self) -> None:
        self.now: float = 0.0
        self.events: int = 0  # model events run so far; brought up to date as ``run`` returns
        self._heap: list[Event] = []
        self._soon: deque[Event] = deque()
        self._seq = 0  # the last seq given out
        self._cancelled = 0  # cancelled events still queued (heap or FIFO)
        self._stop_time: float | None = None
        self._compacted = 0  # cancelled entries dropped by _compact, ever (for run's count)
        # Debug hook run after every event (the invariant checker); None on the fast path.
        self.after_event: Callable[[], None] | None = None

    # Methods, not closures over the heap: compiled, the model calls them directly as C
    # functions, where a closure is a generic call that parses ``*args`` each time.
    def schedule(self, delay: float, callback: Callable[..., Any], *args: Any) -> Handle:
        """Run ``callback(*args)`` after ``delay`` seconds; returns a handle for ``cancel``."""
        if delay < 0.0:
            raise ValueError(f"cannot schedule into the past (delay={delay})")
        event = self._new_event(self.now + delay, callback, args)
        heappush(self._heap, event)
        return event

    def soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """``schedule(0.0, callback, *args)``, cheaper: runs after the events already due."""
        event = self._new_event(self.now, callback, args)
        self._soon.append(event)
        return event

    def at(self, time: float, callback: Callable[..., Any], *args: Any) -> Handle:
        """Run ``callback(*args)`` at absolute ``time`` (not before now)."""
        if time < self.now:
            raise ValueError(f"cannot schedule into the past (time={time}, now={self.now})")
        event = self._new_event(time, callback, args)
        heappush(self._heap, event)
        return event

    def _new_event(self, time: float, callback: Callable[..., Any], args: tuple) -> Event:
        """An event with the next seq: every queued event takes one (``run`` counts by them)."""
        seq = self._seq + 1
        self._seq = seq
        return Event(time, seq, callback, args)

    def cancel(self, handle: Handle | None) -> None:
        """Forget a scheduled event; cancelling twice or after it ran is harmless."""
        if handle is not None and handle.state == _QUEUED:
            handle.state = _CANCELLED
            n = self._cancelled + 1
            self._cancelled = n
            # Cancelled events far in the future would bloat the heap (every pop pays for its
            # depth): once they outnumber the live ones, drop them all. Amortised O(1).
            if n > 64 and 2 * n > len(self._heap):
                self._compact()

    def _compact(self) -> None:
        heap, soon = self._heap, self._soon
        self._compacted += len(heap) + len(soon)
        heap[:] = [e for e in heap if e.state != _CANCELLED]  # in place: run holds it
        heapify(heap)
        kept = [e for e in soon if e.state != _CANCELLED]
        soon.clear()
        soon.extend(kept)
        self._cancelled = 0
        self._compacted -= len(heap) + len(soon)

    def stop(self) -> None:
        """End ``run`` after the current event (e.g. when every VM has finished)."""
        if self._stop_time is None:
            self._stop_time = self.now
            # A seq like any push, so ``run`` counts this sentinel among the pushed entries.
            heappush(self._heap, self._new_event(_NEG_INF, _halt, ()))

    @property
    def pending(self) -> int:
        return len(self._heap) + len(self._soon) - self._cancelled

    def run(self, until: float) -> None:
        """Process events in time order until the clock would pass ``until`` or ``stop()``."""
        heap = self._heap
        soon = self._soon
        popleft = soon.popleft
        pop = heappop  # a local: compiled, a module global is a dict lookup per use
        hook = self.after_event
        # Events are not counted in the hot loop (a counter per event costs): entries popped
        # are queued + pushed - left - compacted, and all but the skipped cancelled ones and a
        # stop sentinel are events. Each push (stop's too) takes one seq.
        queued = len(heap) + len(soon)
        first_seq = self._seq
        compacted = self._compacted
        skipped = 0
        halted_by_stop = False
        # A sentinel at ``until`` that sorts after every real event at that time ends the run,
        # so the hot loop compares no times and never finds the heap empty.
        end = Event(until, _AFTER_ALL, _halt, ())
        heappush(heap, end)
        end_queued = True
        event: Event
        try:
            if hook is None:
                while True:
                    if soon and soon[0] < heap[0]:
                        event = popleft()
                    else:
                        event = pop(heap)
                    if event.state == _CANCELLED:
                        self._cancelled -= 1
                        skipped += 1
                        continue
                    event.state = _RAN
                    self.now = event.time
                    event.callback(*event.args)
            else:
                while True:
                    if soon and soon[0] < heap[0]:
                        event = popleft()
                    else:
                        event = pop(heap)
                    if event.state == _CANCELLED:
                        self._cancelled -= 1
                        skipped += 1
                        continue
                    event.state = _RAN
                    self.now = event.time
                    event.callback(*event.args)
                    hook()
        except _Halt:
            end_queued = False
            if self._stop_time is not None:
                halted_by_stop = True
                self.now = self._stop_time
                heap.remove(end)  # stopped early: the end sentinel is still queued
                heapify(heap)
            else:
                self.now = until  # the end sentinel halted: popped, and no model event
        finally:
            pushed = self._seq - first_seq
            left = len(heap) + len(soon) - end_queued
            popped = queued + pushed - left - (self._compacted - compacted)
            self.events += popped - skipped - halted_by_stop
            self._stop_time = None
