"""Fan batches of runs out on Ray: a private local Ray by default, or an existing cluster.

One Ray task runs a *batch* of runs (``execute.run_batch``), so a sweep of thousands of
millisecond-long runs pays Ray's per-task overhead a few dozen times, not thousands. Ray does
not retry tasks (``max_retries=0``): a batch whose worker dies is reported back, the driver
keeps its finished runs (already on disk), retries the others one per task, and records a run
that kills its worker again as failed.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from disco.framework import results
from disco.framework.execute import RunContext, RunSpec, RunSummary, record_lost, run_batch

LOCAL = "local"

# Inside ``shared()``: how to stop the private local Ray a sweep started (else None).
_held: list[Callable[[], None]] | None = None


class RayStartError(RuntimeError):
    """Ray could not be started or attached; nothing has run."""


def is_serial(ray_cfg: dict[str, Any]) -> bool:
    addr = ray_cfg.get("address")
    return addr is None or str(addr).lower() in ("none", "null", "", "serial")


def _env(address: str) -> None:
    """Environment Ray reads at import time, so this runs before the first ``import ray``.

    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray use 127.0.0.1 as this node's IP: right
    for a private local Ray and for attaching to a head bound to loopback, wrong for a real
    multi-host cluster (its nodes could not reach us), so it is only set in the first two cases.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == LOCAL or _is_loopback(_resolve(address)):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _resolve(address: str) -> str:
    """``auto`` -> the address Ray would pick ($RAY_ADDRESS, else the last ``ray start``)."""
    if address != "auto":
        return address
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env
    try:
        return Path(tempfile.gettempdir(), "ray", "ray_current_cluster").read_text().strip()
    except OSError:
        return address


def _is_loopback(address: str) -> bool:
    if address.startswith("ray://"):
        return False
    host = address.rpartition(":")[0] or address
    return host in ("127.0.0.1", "localhost")


def _short_temp_dir() -> str:
    # Ray puts unix sockets under its temp dir; their paths must stay under ~107 bytes.
    path = Path(tempfile.gettempdir()) / f"disco-ray-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _pythonpath() -> str:
    """What local workers need on sys.path to import a task module the driver can import."""
    parts = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))


def init(ray_cfg: dict[str, Any], project_root: Path) -> bool:
    """Start or attach to Ray as configured; return True if this call started it.

    If Ray is already initialized in this process (a notebook, the test session), use it.
    """
    address = str(ray_cfg.get("address") or LOCAL)
    _env(address)
    import ray

    if ray.is_initialized():
        return False
    runtime_env = dict(ray_cfg.get("runtime_env") or {})
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning",
                              "log_to_driver": True}
    if address == LOCAL:
        mem = ray_cfg.get("object_store_memory_mb")
        # The raylet is our child and its workers inherit its environment: PYTHONPATH set for
        # the start is enough (a runtime_env would add a per-worker setup step).
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = _pythonpath()
        try:
            ray.init(
                address=LOCAL,
                num_cpus=int(ray_cfg.get("num_cpus") or os.cpu_count() or 1),
                object_store_memory=int(mem) * 2**20 if mem else None,
                _temp_dir=ray_cfg.get("temp_dir") or _short_temp_dir(),
                _node_ip_address="127.0.0.1",
                runtime_env=runtime_env or None,
                **{**common, "log_to_driver": False},  # failures are in the rows anyway
            )
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    else:
        if ray_cfg.get("ship_code", True):
            runtime_env.setdefault("working_dir", str(project_root))
            runtime_env.setdefault("excludes", [
                ".git", ".venv", "results", "outputs", "multirun", "*.parquet", "*.png",
                ".ruff_cache", ".pytest_cache", ".hypothesis", "__pycache__",
            ])
        node_ip = ray_cfg.get("node_ip_address") or (
            "127.0.0.1" if _is_loopback(_resolve(address)) else None)
        extra = {"_node_ip_address": node_ip} if node_ip else {}
        common["logging_level"] = "info"  # say what is shipped where
        ray.init(address=address, runtime_env=runtime_env or None, **common, **extra)
    return True


@contextmanager
def shared() -> Iterator[None]:
    """Sweeps run inside keep the private local Ray the first of them starts; it stops on exit.

    ``make run`` runs nine studies one after another: one Ray start and stop (~10 s on 2 cores)
    instead of nine. Ray still starts only when a sweep has runs left to do, with the first such
    sweep's ``ray`` settings. Nested use is the outer one's.
    """
    global _held
    if _held is not None:
        yield
        return
    _held = []
    try:
        yield
    finally:
        stops, _held = _held, None
        for stop in reversed(stops):
            stop()


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


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


def run(specs: list[RunSpec], ctx: RunContext, ray_cfg: dict[str, Any], project_root: Path,
        batch_size: int | None, on_summary: Callable[[RunSummary], None],
        tick: Callable[[], None] = lambda: None) -> None:
    """Run every spec on Ray, calling ``on_summary`` once per run as results come back."""
    _env(str(ray_cfg.get("address") or LOCAL))
    import ray
    from ray.exceptions import RayError

    from disco.framework.reaper import Reaper

    local = not ray.is_initialized() and str(ray_cfg.get("address") or LOCAL) == LOCAL
    reaper = Reaper() if local else None
    try:
        started = init(ray_cfg, project_root)
    except Exception as exc:
        raise RayStartError(f"cannot start or attach Ray (ray.address="
                            f"{ray_cfg.get('address')}): {type(exc).__name__}: {exc}") from exc
    finally:
        if reaper and not ray.is_initialized():
            reaper.close()
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_batch)
        ctx_ref = ray.put(ctx)
        cpus = cluster_cpus()
        batcher = Batcher(specs, batch_size, cpus)
        pending: dict[Any, list[RunSpec]] = {}

        def submit() -> None:  # two tasks per CPU in flight: each worker has the next queued
            while batcher.queue and len(pending) < 2 * cpus:
                batch = batcher.next()
                pending[remote.remote(batch, ctx_ref)] = batch

        submit()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in done:
                batch = pending.pop(ref)
                try:
                    summaries = ray.get(ref)
                except RayError as exc:  # the worker died (or the task could not be run)
                    summaries = _salvage(batch, ctx, exc, pending, remote, ctx_ref)
                for s in summaries:
                    batcher.observe(s.row.get("run_wall_s"))
                    on_summary(s)
            submit()
            tick()
    finally:
        def stop() -> None:
            if started:
                ray.shutdown()
            if reaper:
                reaper.close()

        if _held is not None and (started or reaper):
            _held.append(stop)  # shared(): the next sweep finds Ray initialized and uses it
        else:
            stop()


def _salvage(batch: list[RunSpec], ctx: RunContext, exc: Exception, pending: dict[Any, Any],
             remote: Any, ctx_ref: Any) -> list[RunSummary]:
    """A batch whose worker died: keep its finished runs, retry the others one per task.

    Only the run that kills its worker again is then recorded as failed, not its batch-mates.
    """
    reason = f"ray task failed: {type(exc).__name__}: {exc}"
    out, retry = [], []
    for spec in batch:
        if len(batch) > 1 and results.read_row(
                results.run_dir(ctx.results_dir, spec.study, spec.key)) is None:
            retry.append(spec)
        else:
            out.append(record_lost(spec, ctx, reason))
    for spec in retry:
        pending[remote.remote([spec], ctx_ref)] = [spec]
    return out
