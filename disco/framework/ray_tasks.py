"""Runs on Ray, once it is up: cut into batches sized from measured run times, kept in flight
two per CPU, collected as they finish; a run past ``sweep.run_timeout_s`` has its task killed, a
task whose worker died is salvaged (finished runs kept, the others retried once alone), and a
dead raylet ends the loop with every unfinished run recorded failed. Starting, attaching and
stopping Ray are ``ray_backend``'s.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from disco.framework import ray_local, results
from disco.framework.execute import RunContext, RunSpec, RunSummary, record_lost, run_batch


class Batcher:
    """Cuts the queue of runs into Ray tasks, sized from the runs' measured duration.

    A fixed ``sweep.batch_size`` is used as given. Otherwise the first tasks carry one run
    each; once run times are known, a task carries about ``TASK_S`` seconds of runs (so 1000
    runs of 10 ms are a few dozen tasks, and 30 runs of 2 s are 30 tasks), and near the end
    batches shrink so both CPUs finish together instead of one waiting for a long last batch.
    """

    TASK_S = 0.25
    MAX_RUNS = 100

    def __init__(self, specs: list[RunSpec], size: int | None, cpus: int) -> None:
        self.queue = deque(specs)
        self.fixed = size
        self.cpus = cpus
        self._wall = 0.0
        self._runs = 0

    def observe(self, run_wall_s: float | None) -> None:
        if run_wall_s is not None:
            self._wall += run_wall_s
            self._runs += 1

    def size(self) -> int:
        if self.fixed:
            return self.fixed
        if not self._runs:
            return 1
        mean = self._wall / self._runs
        size = min(self.MAX_RUNS, max(1, int(self.TASK_S / max(mean, 1e-6))))
        return max(1, min(size, math.ceil(len(self.queue) / (2 * self.cpus))))

    def next(self) -> list[RunSpec]:
        n = min(self.size(), len(self.queue))
        return [self.queue.popleft() for _ in range(n)]


class RayGone(Exception):
    """The driver's Ray is gone (its raylet died): nothing more can run."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def drive(ray: Any, flight: Flight, batcher: Batcher, cpus: int,
           on_summary: Callable[[RunSummary], None], tick: Callable[[], None],
           stop: Callable[[], bool], raylet: int | None = None) -> None:
    """Submit, wait and collect until every batch is in (or ``stop()``); a task that died is
    salvaged, a run past its time is killed, and a dead ``raylet`` (this driver's private
    one) raises RayGone at once (Ray's own notice takes ~15 s)."""
    from ray.exceptions import RayError

    def submit() -> None:  # two tasks per CPU in flight: each worker has the next queued
        while batcher.queue and len(flight.pending) < 2 * cpus:
            flight.submit(batcher.next())

    submit()
    while flight.pending:
        try:
            done, _ = ray.wait(list(flight.pending), num_returns=1, timeout=0.5)
        except RayError as exc:
            raise RayGone(f"Ray stopped: {type(exc).__name__}: {exc}") from exc
        for ref in done:
            batch = flight.pending.pop(ref)
            try:
                summaries = ray.get(ref)
            except RayError as exc:  # the worker died, was killed, or Ray went
                cause = getattr(exc, "cause", None)
                if isinstance(cause, results.WriteError):
                    raise cause from None  # the disk, not the run: the sweep stops
                summaries = flight.salvage(batch, exc)
            for s in summaries:
                batcher.observe(s.row.get("run_wall_s"))
                on_summary(s)
        if stop():
            for ref in flight.pending:  # runs they finish anyway stay complete on disk
                ray.cancel(ref)
            return
        if raylet is not None and not ray_local.alive(raylet):
            raise RayGone(f"Ray stopped: its raylet (pid {raylet}) died")
        flight.check_timeouts()
        submit()
        tick()


class Flight:
    """The tasks in flight: their batches, which of their runs went past the timeout (found by
    the run's claim: held by this sweep, first seen when), and which runs were retried."""

    def __init__(self, ray: Any, ctx: RunContext, timeout_s: float | None) -> None:
        self.ray = ray
        self.ctx = ctx
        self.timeout_s = timeout_s
        # The context goes inline with each task (a few KB): an object in the store would be
        # lost with the raylet, and Ray then ends the driver trying to recover it.
        self.remote = ray.remote(num_cpus=1, max_retries=0)(run_batch)
        self.pending: dict[Any, list[RunSpec]] = {}
        self.running_since: dict[str, float] = {}
        self.timed_out: dict[str, str] = {}
        self.retried: set[str] = set()
        self.lost: list[RunSpec] = []  # a batch taken out when Ray went

    def submit(self, batch: list[RunSpec]) -> None:
        self.pending[self.remote.remote(batch, self.ctx)] = batch

    def check_timeouts(self) -> None:
        """Kill the task of any run of ours still running ``timeout_s`` after we first saw it."""
        if self.timeout_s is None:
            return
        now = time.monotonic()
        for ref, batch in list(self.pending.items()):
            for spec in batch:
                if spec.key in self.timed_out:
                    continue
                held = results.holder(results.run_dir(self.ctx.results_dir, spec.study, spec.key))
                if not held or held.get("sweep") != self.ctx.sweep_id:
                    continue
                since = self.running_since.setdefault(spec.key, now)
                if now - since > self.timeout_s:
                    self.timed_out[spec.key] = (f"timed out: still running after "
                                                f"{self.timeout_s:g} s (sweep.run_timeout_s)")
                    self.ray.cancel(ref, force=True)  # kills its worker
                    break

    def salvage(self, batch: list[RunSpec], exc: Exception) -> list[RunSummary]:
        """A batch whose worker died or was killed: keep its finished runs, record the one that
        timed out, retry each other one once, alone; a run whose retry dies too is failed.

        A dead local raylet is not a worker: the sweep ends (``RayGone``).
        """
        from ray.exceptions import LocalRayletDiedError

        reason = f"ray task failed: {type(exc).__name__}: {exc}"
        if isinstance(exc, LocalRayletDiedError) or not self.ray.is_initialized():
            self.lost += batch
            raise RayGone(f"Ray stopped: {reason}")
        out = []
        for spec in batch:
            path = results.run_dir(self.ctx.results_dir, spec.study, spec.key)
            if spec.key in self.timed_out:
                out.append(record_lost(spec, self.ctx, self.timed_out[spec.key]))
            elif results.read_row(path) is not None or spec.key in self.retried:
                out.append(record_lost(spec, self.ctx, reason))
            else:
                self.retried.add(spec.key)
                self.submit([spec])
        return out

    def abandon(self, batcher: Batcher, reason: str) -> list[RunSummary]:
        """Ray is gone: every run not finished is recorded failed (finished ones are kept)."""
        specs = [*self.lost, *(spec for batch in self.pending.values() for spec in batch),
                 *batcher.queue]
        self.pending.clear()
        batcher.queue.clear()
        why = f"{reason} (the sweep ended; run the same command to resume)"
        return [record_lost(spec, self.ctx, why) for spec in specs]
