"""The private local Ray a sweep starts, locked down: nobody but its user can use it.

What Ray 2.60 does by default, and what is done here instead (read in its sources):

- **Authentication.** With ``RAY_AUTH_MODE=token`` every gRPC server (GCS, raylet, core
  workers) and HTTP server (the dashboard agent with its job-submission API, the runtime-env
  agent) refuses a request without the cluster's token (gRPC ``UNAUTHENTICATED``, HTTP 401).
  Each private Ray gets a fresh 256-bit token, in a 0600 file in a 0700 directory of its own
  (``RAY_AUTH_TOKEN_PATH``); Ray's processes inherit the path, never the token on a command line.
- **Ports.** Ray binds every port to the node IP, 127.0.0.1 here
  (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``). The dashboard agent's HTTP port is fixed at 52365
  and two Prometheus ports at 44217 / 44227, one per machine, so concurrent sweeps (other users')
  shared them; here they are all chosen by the kernel (``dashboard_agent_listen_port=0``, which
  ``ray.init`` does not expose, and ``AUTOSCALER_METRIC_PORT`` / ``DASHBOARD_METRIC_PORT=0``).
- **Temp dir.** Ray makes its temp dir world-writable (``chmod 0777``). It gets a folder inside
  ``/tmp/disco-ray-<uid>``, used only if it is a real directory (not a symlink) owned by the user
  with mode 0700; else a fresh ``mkdtemp``, removed when the sweep's Ray stops.
- **The working directory.** ``ray.init`` puts the driver's working directory (and its script's)
  at the head of every worker's ``sys.path``, ahead of the standard library: a ``yaml.py`` there
  would run in every worker. ``ray.init`` is called from an empty private folder with the
  script's directory off ``sys.path`` (``no_driver_paths``); task modules reach workers through
  ``RunContext.sys_path`` instead (``execute.trusted_path``).
- ``DISCO_RAY_SESSION``, inherited by every process of this Ray, lets the reaper find the ones it
  never saw (``reaper.py``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SESSION_ENV = "DISCO_RAY_SESSION"
# Ray's fixed Prometheus ports (ray/autoscaler/_private/constants.py, ray/dashboard/consts.py):
# 0 = a port the kernel picks, so sweeps on one machine do not share them.
_PORT_ENV = {"AUTOSCALER_METRIC_PORT": "0", "DASHBOARD_METRIC_PORT": "0"}


class UnsafeTempDir(RuntimeError):
    """``ray.temp_dir`` names a folder other users could write to (or a symlink)."""


def not_private(path: Path) -> str | None:
    """None if ``path`` is a real directory owned by this user that only this user can enter;
    else what is wrong with it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}"
    if st.st_mode & 0o077:
        return f"mode {stat.S_IMODE(st.st_mode):o}, others may write or enter it"
    return None


def private_dir(base: str | Path | None = None) -> tuple[Path, bool]:
    """``<tmp>/disco-ray-<uid>`` if it is private (created so if missing), else a fresh
    ``mkdtemp`` next to it; returns (the folder, whether it is a fresh one to remove after).

    Short on purpose: Ray's unix sockets live below it (paths must stay under ~107 bytes).
    """
    base = Path(base or tempfile.gettempdir())
    path = base / f"disco-ray-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    if not_private(path) is None:
        return path, False
    return Path(tempfile.mkdtemp(prefix=f"disco-ray-{os.getuid()}-", dir=base)), True


def checked_temp_dir(given: str) -> Path:
    """A ``ray.temp_dir`` the user named: created private if missing, refused if others could
    write to it (its contents would be theirs to plant)."""
    path = Path(given).expanduser().absolute()
    if not path.exists() and not path.is_symlink():
        path.mkdir(mode=0o700, parents=True)
    why = not_private(path)
    if why is not None:
        raise UnsafeTempDir(f"ray.temp_dir={given}: {why}; give a folder only you can enter "
                            f"(chmod 700), or leave ray.temp_dir=null for a private one")
    return path


@contextlib.contextmanager
def no_driver_paths(safe_cwd: Path | None) -> Iterator[None]:
    """During ``ray.init``: no directory of the driver's reaches the workers' ``sys.path``.

    ``ray.init`` (Ray 2.60, ``_private/worker.py``, script mode) sends its workers, to put
    ahead of their own path, the working directory (unless the runtime env has a
    ``working_dir``) and the running script's directory if it is on ``sys.path``. For the call,
    the process works in ``safe_cwd`` (a private, empty folder, so that is what they get) and the
    script's directory is off ``sys.path`` (put back after). ``None``: stay
    where we are (a runtime env ``working_dir`` is sent instead of the working directory).
    """
    script = os.path.dirname(os.path.realpath(sys.argv[0])) if sys.argv and sys.argv[0] \
        else None
    saved = list(sys.path)
    # Where Python put it for a script (a console script: its bin/); Ray skips it when there is
    # no __main__ file (a notebook kernel, whose argv[0] may sit in site-packages).
    if script and sys.path[:1] == [script] and hasattr(sys.modules.get("__main__"), "__file__"):
        del sys.path[0]
    cwd = os.getcwd() if safe_cwd is not None else None
    if safe_cwd is not None:
        os.chdir(safe_cwd)
    try:
        yield
    finally:
        if cwd is not None:
            os.chdir(cwd)
        sys.path[:] = saved + [p for p in sys.path if p not in saved]


def empty_private_dir(parent: Path) -> Path:
    """A fresh folder only this user can enter, with nothing in it (``no_driver_paths``)."""
    return Path(tempfile.mkdtemp(prefix="cwd-", dir=parent))


@contextlib.contextmanager
def kernel_chosen_agent_port() -> Iterator[None]:
    """During ``ray.init``: the dashboard agent's HTTP port chosen by the kernel, not 52365.

    ``ray.init`` builds its ``RayParams`` without ``dashboard_agent_listen_port`` (Ray 2.60,
    ``_private/worker.py``), and 0 means "any free port" to the agent (``dashboard/agent.py``).
    If this Ray has no such parameter, nothing changes.
    """
    import inspect

    import ray._private.parameter as parameter

    original = parameter.RayParams
    if "dashboard_agent_listen_port" not in inspect.signature(original).parameters:
        yield
        return

    class _Params(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("dashboard_agent_listen_port", 0)
            super().__init__(*args, **kwargs)

    parameter.RayParams = _Params
    try:
        yield
    finally:
        parameter.RayParams = original


def _refresh_ray_config() -> None:
    """Ray reads ``RAY_AUTH_MODE`` into its C++ config at import and caches the token: re-read
    both when the environment changed after ``import ray`` (Ray does the same when it turns
    token auth on itself, ``authentication_token_setup._enable_token_auth``)."""
    raylet = sys.modules.get("ray._raylet")
    if raylet is None:
        return
    with contextlib.suppress(AttributeError):
        raylet.Config.initialize("")
    with contextlib.suppress(AttributeError):
        raylet.AuthenticationTokenLoader.instance().reset_cache()


def raylet_pid() -> int | None:
    """The raylet this driver started (its child named ``raylet``), on Linux; else None."""
    me = os.getpid()
    for d in Path("/proc").iterdir() if sys.platform.startswith("linux") else ():
        try:
            stat_line = (d / "stat").read_text()
        except (OSError, ValueError):
            continue
        name = stat_line[stat_line.find("(") + 1:stat_line.rfind(")")]
        if name == "raylet" and int(stat_line[stat_line.rfind(")") + 2:].split()[1]) == me:
            return int(d.name)
    return None


def alive(pid: int) -> bool:
    """Is ``pid`` running (not gone, not a zombie)?"""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line[stat_line.rfind(")") + 2:].split()[0] != "Z"


class EnvPatch:
    """Environment variables set (None: removed) until ``restore()``, Ray's config re-read."""

    def __init__(self, env: dict[str, str | None]) -> None:
        self._saved = {key: os.environ.get(key) for key in env}
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _refresh_ray_config()

    def restore(self, *keys: str) -> None:
        """Put back ``keys`` (every one if none given; then Ray's config is re-read)."""
        for key in keys or list(self._saved):
            if key not in self._saved:
                continue
            value = self._saved.pop(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not keys:
            _refresh_ray_config()


def token_env(token_path: Path) -> dict[str, str | None]:
    """What Ray reads to authenticate with the token in ``token_path`` (never on a command
    line, and no token of the environment's own)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path),
            "RAY_AUTH_TOKEN": None}


class LocalSession:
    """The environment and files of one private local Ray; ``close()`` after ``ray.shutdown``."""

    def __init__(self, ray_cfg: dict[str, Any]) -> None:
        given = ray_cfg.get("temp_dir")
        if given:
            self.root, self.fresh = checked_temp_dir(str(given)), False
        else:
            self.root, self.fresh = private_dir()
        self.marker = secrets.token_hex(16)
        self.auth_dir = Path(tempfile.mkdtemp(prefix="auth-", dir=self.root))  # 0700
        self.token_path = self.auth_dir / "token"
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        # Ray chmods its temp dir 0777: it gets a folder inside the private one.
        self.ray_temp_dir = self.root / "r"
        self.raylet: int | None = None  # its pid once started (Linux)
        env = {**token_env(self.token_path), SESSION_ENV: self.marker}
        env.update({k: v for k, v in _PORT_ENV.items() if k not in os.environ})
        self._env = EnvPatch(env)

    @property
    def cleanup_path(self) -> Path:
        """What to remove if the driver dies without ``close()`` (the reaper does)."""
        return self.root if self.fresh else self.auth_dir

    def started(self) -> None:
        """Ray is up, its processes have the marker: later children of the driver do not."""
        self.raylet = raylet_pid()
        self._env.restore(SESSION_ENV)

    def close(self) -> None:
        """Restore the environment; remove the token (and a fresh temp dir)."""
        self._env.restore()
        shutil.rmtree(self.cleanup_path, ignore_errors=True)
