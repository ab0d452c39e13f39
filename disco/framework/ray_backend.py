"""Fan batches of runs out on Ray: a private local Ray by default, or an existing cluster.

One Ray task runs a *batch* of runs (``execute.run_batch``), so a sweep of thousands of
millisecond-long runs pays Ray's per-task overhead a few dozen times, not thousands. Ray does
not retry tasks (``max_retries=0``): a batch whose worker dies is reported back, the driver
keeps its finished runs (already on disk), retries the others one per task, and records a run
that kills its worker again as failed.

Attaching fails fast: ``ray.address=auto`` is resolved here as the Ray docs describe it
($RAY_ADDRESS, else the file the last ``ray start`` wrote), the GCS port is probed before
``ray.init``, and Ray's connect timeouts are shortened for the attempt, so an address that
cannot be reached is an error naming it within seconds instead of retries for minutes.

A private local Ray is locked down (token authentication, kernel-chosen ports, a private temp
dir, no working directory on the workers' path): ``ray_local.py``. Runs past
``sweep.run_timeout_s`` are found by their claims (``results.holder``) and their task is
killed; a dead raylet ends the sweep with its summary instead of the driver.
"""

from __future__ import annotations

import ipaddress
import math
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from disco.framework import ray_local, results
from disco.framework.execute import RunContext, RunSpec, RunSummary, record_lost, run_batch

LOCAL = "local"

# Inside ``shared()``: how to stop the private local Ray a sweep started (else None).
_held: list[Callable[[], None]] | None = None
# Seconds to wait for the GCS port to accept a TCP connection before calling it unreachable.
PROBE_S = 3.0
# Ray's own connect waits while attaching (each only if the user has not set it): a GCS port
# that accepts but does not answer fails in ~8 s instead of ~35 s per try, 20 tries. Ray reads
# them when it is imported, so they only apply if the attach is this process's first import.
ATTACH_TIMEOUTS = {"RAY_gcs_rpc_server_connect_timeout_s": "2",
                   "RAY_py_gcs_connect_timeout_s": "3",
                   "RAY_gcs_server_port_wait_time_s": "1"}
# The CLI sets this: SIGINT / SIGTERM while Ray starts or attaches end the process at once
# (Ray's connect blocks in C++, where Python's handlers cannot run), and SIGTERM during the
# runs stops the sweep like Ctrl-C (``_raise_terminated``). Off for library use (a notebook kernel
# must not exit on an interrupt, and its signal handlers are its own).
cli_signals = False


# The signal that stopped the sweep (SIGTERM), for the CLI's exit code 128 + signal.
stopped_by: int | None = None


def _raise_terminated(signum: int, frame: Any) -> None:
    """SIGTERM during a sweep: stop like Ctrl-C (finished runs kept, Ray shut down). Ray's
    calls may turn the exception into a plain KeyboardInterrupt, so the signal is kept."""
    global stopped_by
    stopped_by = signum
    raise KeyboardInterrupt


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
    Authentication is the cluster's: a private Ray's token is set up by ``ray_local``; when
    attaching, Ray's own rules apply (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN[_PATH]``, else
    ``~/.ray/auth_token``).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == LOCAL or _is_loopback(_resolve_quietly(address)):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address != LOCAL and "ray" not in sys.modules:
        for k, v in ATTACH_TIMEOUTS.items():
            if k not in os.environ:
                os.environ[k] = v
                _attach_env.append(k)


def cluster_file() -> Path:
    """Where ``ray start`` records the cluster's address on Ray 2.x: ``ray_current_cluster`` in
    Ray's temp dir, ``$RAY_TMPDIR``, else (Linux) ``$TMPDIR``, else ``/tmp``, plus ``/ray``."""
    base = os.environ.get("RAY_TMPDIR") or (
        os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None) or "/tmp"
    return Path(base) / "ray" / "ray_current_cluster"


def _resolve(address: str) -> str:
    """``auto`` -> the address Ray would pick ($RAY_ADDRESS, else the last ``ray start``)."""
    return resolve_address(address)[0]


def resolve_address(address: str) -> tuple[str, str]:
    """The concrete address to attach to and where it came from (for messages).

    ``auto`` is $RAY_ADDRESS, else the address in ``cluster_file()``; unlike ``ray.init``, it
    never falls back to whatever GCS process happens to run on the machine (another user's or
    another sweep's private Ray). No cluster found is a RayStartError.
    """
    if address != "auto":
        return address, f"ray.address={address}"
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env, f"ray.address=auto, from $RAY_ADDRESS={env}"
    path = cluster_file()
    try:
        found = path.read_text().strip()
    except OSError:
        found = ""
    if not found:
        raise RayStartError(f"ray.address=auto: no Ray cluster to attach to ($RAY_ADDRESS is "
                            f"not set and there is no {path}); start one with `ray start "
                            "--head` or give ray.address=<host>:<port>")
    return found, f"ray.address=auto, from {path}"


def _host_port(address: str) -> tuple[str, int]:
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayStartError(f"ray.address={address}: expected <host>:<port> (or auto, local, "
                            "none)")
    return host.strip("[]"), int(port)


def _is_loopback(address: str) -> bool:
    if address.startswith("ray://"):
        return False
    host = address.rpartition(":")[0] or address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _loopback_ip(address: str) -> str | None:
    if not _is_loopback(address):
        return None
    host = _host_port(address)[0]
    return "127.0.0.1" if host == "localhost" else host


def probe(address: str, origin: str, timeout: float = PROBE_S) -> None:
    """Raise RayStartError unless something accepts TCP connections at ``address``."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except TimeoutError:
        why = f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        why = "connection refused (nothing listens there: is the cluster running?)"
    except OSError as exc:
        why = exc.strerror or str(exc)
    stale = " (a stale file from a cluster that is gone? `ray stop` removes it)" \
        if origin.endswith(str(cluster_file())) else ""
    raise RayStartError(f"cannot reach Ray at {host}:{port} ({origin}){stale}: {why}")


_attach_env: list[str] = []  # ATTACH_TIMEOUTS keys _env set, to remove after ray.init


def _import_ray(address: str) -> Any:
    """``import ray`` with the environment it reads at import time set for ``address``."""
    _env(address)
    import ray

    return ray


def _restore_attach_env() -> None:
    while _attach_env:
        os.environ.pop(_attach_env.pop(), None)


@contextmanager
def _exit_on_signal() -> Iterator[None]:
    """While Ray starts, SIGINT / SIGTERM end the process at once (``cli_signals``).

    Python runs signal handlers only between bytecodes of the main thread, and ``ray.init``
    spends its waits inside C++ calls, so a handler could wait 30 s. Python's C-level handler
    still writes the signal number to the wakeup fd at once; a thread reading it exits the
    process. A private Ray's processes are then killed by the reaper.
    """
    if not cli_signals or threading.current_thread() is not threading.main_thread():
        yield
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    # Until ray.init installs its SIGTERM handler, SIGTERM's default action ends us at once;
    # after, Python's handler (and so the wakeup fd) sees it.
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if not data:
                return
            for sig in data:
                if sig in (signal.SIGINT, signal.SIGTERM):
                    os.write(2, f"\ndisco: {signal.Signals(sig).name} while starting Ray: "
                                "stopped, nothing ran\n".encode())
                    os._exit(128 + sig)

    thread = threading.Thread(target=watch, name="disco-start-signals", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        os.close(w)
        thread.join(timeout=1)
        os.close(r)


# The private local Ray this process started (``init``), closed by ``shutdown``.
_session: ray_local.LocalSession | None = None


def local_session(ray_cfg: dict[str, Any]) -> ray_local.LocalSession:
    """The token, environment and temp dir of a private local Ray, before ``import ray``."""
    try:
        return ray_local.LocalSession(ray_cfg)
    except ray_local.UnsafeTempDir as exc:
        raise RayStartError(str(exc)) from None
    except OSError as exc:
        raise RayStartError(f"cannot make a private temp dir for Ray: {exc}") from exc


def init(ray_cfg: dict[str, Any], project_root: Path,
         session: ray_local.LocalSession | None = None) -> bool:
    """Start or attach to Ray as configured; return True if this call started it.

    If Ray is already initialized in this process (a notebook, the test session), use it.
    An address that cannot be reached raises RayStartError within seconds, naming it.
    A private local Ray is started with ``session``'s lockdown (made here if not given);
    ``shutdown()`` stops it and removes its token.
    """
    global _session
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        if session is not None:
            session.close()
        return False
    address = str(ray_cfg.get("address") or LOCAL)
    if address != LOCAL:
        address, origin = resolve_address(address)
        probe(address, origin)
    elif session is None:
        session = local_session(ray_cfg)
    runtime_env = dict(ray_cfg.get("runtime_env") or {})
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning",
                              "log_to_driver": True}
    if address == LOCAL:
        assert session is not None
        mem = ray_cfg.get("object_store_memory_mb")
        try:
            ray = _import_ray(address)
            with ray_local.kernel_chosen_agent_port():
                ray.init(
                    address=LOCAL,
                    num_cpus=int(ray_cfg.get("num_cpus") or os.cpu_count() or 1),
                    object_store_memory=int(mem) * 2**20 if mem else None,
                    _temp_dir=str(session.ray_temp_dir),
                    _node_ip_address="127.0.0.1",
                    job_config=ray_local.job_config(),
                    runtime_env=runtime_env or None,
                    **{**common, "log_to_driver": False},  # failures are in the rows anyway
                )
        except BaseException:
            session.close()
            raise
        session.started()
        _session = session
    else:
        ray = _import_ray(address)
        if ray_cfg.get("ship_code", True):
            runtime_env.setdefault("working_dir", str(project_root))
            runtime_env.setdefault("excludes", [
                ".git", ".venv", "results", "outputs", "multirun", "*.parquet", "*.png",
                ".ruff_cache", ".pytest_cache", ".hypothesis", "__pycache__",
            ])
        # A head on loopback (127.0.0.2 ...): this driver uses that node's raylet, so it takes
        # its IP (127.0.0.1 for localhost); Ray would pick the machine's address and find no
        # raylet there (60 s, then "Failed to connect").
        node_ip = ray_cfg.get("node_ip_address") or _loopback_ip(address)
        extra = {"_node_ip_address": node_ip} if node_ip else {}
        common["logging_level"] = "info"  # say what is shipped where
        try:
            ray.init(address=address, runtime_env=runtime_env or None,
                     job_config=ray_local.job_config(), **common, **extra)
        except ConnectionError as exc:
            raise RayStartError(f"cannot attach to Ray at {address} "
                                f"(ray.address={ray_cfg.get('address')}): {exc}") from exc
        finally:
            _restore_attach_env()
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


def shutdown() -> None:
    """``ray.shutdown()``, and the private Ray's token and environment gone with it."""
    global _session
    import ray

    try:
        ray.shutdown()
    finally:
        session, _session = _session, None
        if session is not None:
            session.close()


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
        tick: Callable[[], None] = lambda: None,
        starting: Callable[[str], None] = lambda what: None,
        stop: Callable[[], bool] = lambda: False, timeout_s: float | None = None) -> None:
    """Run every spec on Ray, calling ``on_summary`` once per run as results come back.

    ``starting`` is told what happens before the first run ("starting Ray..."); when ``stop()``
    turns true (``sweep.fail_fast`` after a failure) the tasks in flight are cancelled. A run
    past ``timeout_s`` has its task killed and is recorded failed; if Ray itself goes (its
    raylet dies), every unfinished run is recorded failed and this returns: the sweep still
    writes its table and summary.
    """
    address = str(ray_cfg.get("address") or LOCAL)
    already = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    if not already:
        starting("starting Ray..." if address == LOCAL else f"attaching to Ray ({address})...")
    local = not already and address == LOCAL
    reaper = session = None
    if local:
        from disco.framework.reaper import Reaper

        session = local_session(ray_cfg)
        reaper = Reaper(session.marker, session.cleanup_path)
    try:
        with _exit_on_signal():
            started = init(ray_cfg, project_root, session)
    except RayStartError:
        raise
    except Exception as exc:
        raise RayStartError(f"cannot start or attach Ray (ray.address="
                            f"{ray_cfg.get('address')}): {type(exc).__name__}: {exc}") from exc
    finally:
        _restore_attach_env()
        if reaper and not (sys.modules.get("ray") and sys.modules["ray"].is_initialized()):
            reaper.close()
    import ray

    if not already:
        starting("running the first runs...")
    # Ray's driver installs a C++ SIGTERM handler that prints a stack and exits mid-call:
    # in the CLI, SIGTERM stops the sweep the way Ctrl-C does instead.
    old_term = signal.signal(signal.SIGTERM, _raise_terminated) \
        if cli_signals and threading.current_thread() is threading.main_thread() else None
    try:
        cpus = cluster_cpus()
        batcher = Batcher(specs, batch_size, cpus)
        flight = _Flight(ray, ctx, timeout_s)
        try:
            _drive(ray, flight, batcher, cpus, on_summary, tick, stop)
        except _RayGone as gone:
            if _session is not None:  # its workers outlive the raylet, holding their runs
                from disco.framework.reaper import kill_marked

                kill_marked(_session.marker)
            for s in flight.abandon(batcher, gone.reason):
                on_summary(s)
    finally:
        def stop_ray() -> None:
            if started:
                shutdown()
            if reaper:
                reaper.close()

        if _held is not None and (started or reaper):
            _held.append(stop_ray)  # shared(): the next sweep finds Ray initialized and uses it
        else:
            stop_ray()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


class _RayGone(Exception):
    """The driver's Ray is gone (its raylet died): nothing more can run."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _drive(ray: Any, flight: _Flight, batcher: Batcher, cpus: int,
           on_summary: Callable[[RunSummary], None], tick: Callable[[], None],
           stop: Callable[[], bool]) -> None:
    from ray.exceptions import RayError

    def submit() -> None:  # two tasks per CPU in flight: each worker has the next queued
        while batcher.queue and len(flight.pending) < 2 * cpus:
            flight.submit(batcher.next())

    submit()
    while flight.pending:
        try:
            done, _ = ray.wait(list(flight.pending), num_returns=1, timeout=0.5)
        except RayError as exc:
            raise _RayGone(f"Ray stopped: {type(exc).__name__}: {exc}") from exc
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
        raylet = _session.raylet if _session is not None else None
        if raylet is not None and not ray_local.alive(raylet):  # Ray's own notice takes ~15 s
            raise _RayGone(f"Ray stopped: its raylet (pid {raylet}) died")
        flight.check_timeouts()
        submit()
        tick()


class _Flight:
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

        A dead local raylet is not a worker: the sweep ends (``_RayGone``).
        """
        from ray.exceptions import LocalRayletDiedError

        reason = f"ray task failed: {type(exc).__name__}: {exc}"
        if isinstance(exc, LocalRayletDiedError) or not self.ray.is_initialized():
            self.lost += batch
            raise _RayGone(f"Ray stopped: {reason}")
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


def _resolve_quietly(address: str) -> str:
    try:
        return _resolve(address)
    except RayStartError:
        return address  # init() raises it, with its message
