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
dir, no working directory on the workers' path): ``ray_local.py``. The runs themselves, once
Ray is up, are ``ray_tasks.py``'s: batches, timeouts (a run past ``sweep.run_timeout_s`` is
found by its claim, ``results.holder``, and its task killed), salvage, and a dead raylet that
ends the sweep with its summary instead of the driver.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from disco.framework import ray_local
from disco.framework.execute import RunContext, RunSpec, RunSummary
from disco.framework.ray_tasks import Batcher, Flight, RayGone, drive

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


# The CLI sets this: a private local Ray is not shut down by the driver (``ray.shutdown`` waits
# ~1.4 s for its processes); the CLI ends with ``os._exit`` once its results are written and
# printed, and the reaper, seeing its pipe close, kills that Ray's processes and removes its
# token (``reaper.py``). Off for library use: the process goes on, and so would Ray.
leave_to_reaper = False
# Set when a private Ray was left to its reaper: the process must end with ``os._exit``.
left: list[Any] = []


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

    ``auto`` is $RAY_ADDRESS, else the cluster ``disco ray up`` recorded (``ray_cluster``), else
    the address in ``cluster_file()``; unlike ``ray.init``, it
    never falls back to whatever GCS process happens to run on the machine (another user's or
    another sweep's private Ray). No cluster found is a RayStartError.
    """
    if address != "auto":
        return address, f"ray.address={address}"
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env, f"ray.address=auto, from $RAY_ADDRESS={env}"
    rec = _disco_cluster()
    if rec is not None:
        from disco.framework import ray_cluster

        if not ray_cluster.alive(rec):
            raise RayStartError(f"ray.address=auto: the cluster `disco ray up` recorded at "
                                f"{rec.address} (pid {rec.pid}) is not running (a stale "
                                "record); `disco ray down` removes it, `disco ray up` starts "
                                "a new one")
        return rec.address, "ray.address=auto, from `disco ray up`"
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


def _disco_cluster() -> Any:
    """The record of the cluster ``disco ray up`` started (up or stale), or None; a record
    that cannot be trusted is a RayStartError."""
    from disco.framework import ray_cluster

    try:
        return ray_cluster.recorded()
    except ray_cluster.ClusterError as exc:
        raise RayStartError(f"ray.address=auto: {exc}") from None


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
# The token environment of the ``disco ray up`` cluster this process attached to.
_attached: ray_local.EnvPatch | None = None


# The empty folder the attaching ray.init ran in (``ray_local.no_driver_paths``).
_attached_cwd: Path | None = None


def _forget_attached() -> None:
    global _attached, _attached_cwd
    patch, _attached = _attached, None
    if patch is not None:
        patch.restore()
    if _attached_cwd is not None:
        shutil.rmtree(_attached_cwd, ignore_errors=True)
        _attached_cwd = None


def _own_cluster(address: str) -> tuple[Any, Path] | None:
    """(its record, its checked token) if ``address`` is the running ``disco ray up`` cluster."""
    from disco.framework import ray_cluster

    try:
        rec = ray_cluster.recorded()
    except ray_cluster.ClusterError:
        return None  # then it is not that cluster's address that was given
    if rec is None or rec.address != address or not ray_cluster.alive(rec):
        return None
    try:
        return rec, ray_cluster.trusted_token(rec)
    except ray_cluster.ClusterError as exc:
        raise RayStartError(f"ray.address={address}: {exc}") from None


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
            with ray_local.kernel_chosen_agent_port(), \
                    ray_local.no_driver_paths(ray_local.empty_private_dir(session.auth_dir)):
                ray.init(
                    address=LOCAL,
                    num_cpus=int(ray_cfg.get("num_cpus") or os.cpu_count() or 1),
                    object_store_memory=int(mem) * 2**20 if mem else None,
                    _temp_dir=str(session.ray_temp_dir),
                    _node_ip_address="127.0.0.1",
                    runtime_env=runtime_env or None,
                    **{**common, "log_to_driver": False},  # failures are in the rows anyway
                )
        except BaseException:
            session.close()
            raise
        session.started()
        _session = session
    else:
        global _attached
        own = _own_cluster(address)
        if own is not None:  # `disco ray up`'s: its token; its workers run this code already
            _attached = ray_local.EnvPatch(ray_local.token_env(own[1]))
        ray = _import_ray(address)
        ship = ray_cfg.get("ship_code")
        if ship if ship is not None else not (own and own[0].python == sys.executable):
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
        global _attached_cwd
        if "working_dir" not in runtime_env:  # else Ray sends that, not the working directory
            _attached_cwd = ray_local.empty_private_dir(Path(tempfile.gettempdir()))
        try:
            with ray_local.no_driver_paths(_attached_cwd):
                ray.init(address=address, runtime_env=runtime_env or None, **common, **extra)
        except ConnectionError as exc:
            _forget_attached()
            raise RayStartError(f"cannot attach to Ray at {address} "
                                f"(ray.address={ray_cfg.get('address')}): {exc}") from exc
        except BaseException:
            _forget_attached()
            raise
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
        _forget_attached()


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


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
    started, reaper = _start(ray_cfg, project_root, local=not already and address == LOCAL)
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
        flight = Flight(ray, ctx, timeout_s)
        try:
            drive(ray, flight, batcher, cpus, on_summary, tick, stop,
                  raylet=_session.raylet if _session is not None else None)
        except RayGone as gone:
            if _session is not None:  # its workers outlive the raylet, holding their runs
                from disco.framework.reaper import kill_marked

                kill_marked(_session.marker)
            for s in flight.abandon(batcher, gone.reason):
                on_summary(s)
    finally:
        stop_ray = _stopper(started, reaper)
        if _held is not None and (started or reaper):
            _held.append(stop_ray)  # shared(): the next sweep finds Ray initialized and uses it
        else:
            stop_ray()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _start(ray_cfg: dict[str, Any], project_root: Path, local: bool) -> tuple[bool, Any]:
    """``init`` with a reaper for a private local Ray (``local``); (started, reaper)."""
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
    return started, reaper


def _stopper(started: bool, reaper: Any) -> Callable[[], None]:
    def stop_ray() -> None:
        if started and reaper and leave_to_reaper and _session is not None:
            left.append(reaper)  # keeps its pipe open until the process ends
            return
        if started:
            shutdown()
        if reaper:
            reaper.close()

    return stop_ray


def prestart(ray_cfg: dict[str, Any], project_root: Path) -> Callable[[], None] | None:
    """Inside ``shared()``: start the private local Ray ``ray_cfg`` asks for now, before the
    first sweep needs it (``reproduce.py`` starts it while its studies are planned in other
    processes). Returns the call that stops it again, for a caller whose plans then ask for
    other ``ray`` settings (a sweep finds Ray initialized and uses it as it is); None if it
    started nothing (not in ``shared()``, a serial or attached config, Ray already up)."""
    if (_held is None or is_serial(ray_cfg) or str(ray_cfg.get("address") or LOCAL) != LOCAL
            or ("ray" in sys.modules and sys.modules["ray"].is_initialized())):
        return None
    started, reaper = _start(ray_cfg, project_root, local=True)
    stop_ray = _stopper(started, reaper)
    _held.append(stop_ray)

    def undo() -> None:
        if _held is not None and stop_ray in _held:
            _held.remove(stop_ray)
            stop_ray()

    return undo


def _resolve_quietly(address: str) -> str:
    try:
        return _resolve(address)
    except RayStartError:
        return address  # init() raises it, with its message
