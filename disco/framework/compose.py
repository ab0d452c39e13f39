"""``conf/`` + overrides -> config, with Hydra's compose API (no ``@hydra.main``, no output dirs).

Hydra is used for what it is good at: config groups, defaults lists, the override grammar and
its error messages. Launching runs is ``disco.framework.sweep``'s job (see docs/framework.md),
so Hydra's own settings (``hydra.*``, ``hydra/launcher=...``) are refused with a hint
(``reject_hydra``) instead of being accepted and ignored.

The config search path is the project's ``conf/`` plus any folders the user adds with
``--config-dir`` or ``$DISCO_CONF_DIR``; an added folder is searched *before* ``conf/``, so its
options win and its new groups and options join the project's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disco.framework import schema

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from disco.config import SimConfig


class PlanError(ValueError):
    """A usage error in the command line (not a config value): exit code 2 like a ConfigError."""


def project_root() -> Path:
    """The checkout holding ``disco/`` and ``conf/`` (the package is installed editable)."""
    import disco

    return Path(disco.__file__).resolve().parent.parent


def conf_dir() -> Path:
    """The project's own config tree, ``<project>/conf``: always last on the search path."""
    return project_root() / "conf"


@dataclass(frozen=True, slots=True)
class ConfigDir:
    path: Path
    provider: str  # who added it: "--config-dir", "DISCO_CONF_DIR" or "disco" (conf/)


def search_path(config_dirs: Sequence[str | Path] = ()) -> tuple[ConfigDir, ...]:
    """Where configs are looked up, first match wins: ``--config-dir`` folders (in the order
    given), then ``$DISCO_CONF_DIR`` (``os.pathsep``-separated), then the project's ``conf/``.

    A folder that does not exist is an error naming it: a typo must not fall back silently.
    """
    env = [p for p in os.environ.get("DISCO_CONF_DIR", "").split(os.pathsep) if p]
    out: list[ConfigDir] = []
    for provider, dirs in (("--config-dir", list(config_dirs)), ("DISCO_CONF_DIR", env)):
        for d in dirs:
            path = Path(d).expanduser().resolve()
            if not path.is_dir():
                raise PlanError(f"{provider} {d}: not a directory")
            out.append(ConfigDir(path, provider))
    out.append(ConfigDir(conf_dir(), "disco"))
    unique = {c.path: c for c in reversed(out)}  # a folder listed twice keeps its first place
    return tuple(c for c in out if unique[c.path] is c)


SearchPath = tuple[ConfigDir, ...]


def _listing(root: Path) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.name.startswith((".", "_")):
            groups[p.name] = tuple(sorted(f.stem for f in p.glob("*.yaml")))
    return groups


def group_options(search: SearchPath | None = None) -> dict[str, list[str]]:
    """Every config group of the search path and its options (the union over all folders)."""
    out: dict[str, set[str]] = {}
    for c in search or search_path():
        for group, options in _listing(c.path).items():
            out.setdefault(group, set()).update(options)
    return {g: sorted(o) for g, o in sorted(out.items())}


def group_names(search: SearchPath | None = None) -> frozenset[str]:
    """Config groups = sub-directories of the search path (``machine``, ``experiment`` ...)."""
    return frozenset(group_options(search))


# --- Hydra's own settings do not apply: refuse them, saying what to use instead -------------

_HYDRA_HINTS = (
    ("hydra/sweeper", "disco plans its own sweeps: -m key=a,b,c, range(), glob() or a study's "
                      "sweep.params; tuning with Optuna is `disco tune`"),
    ("hydra.sweeper", "disco plans its own sweeps: -m key=a,b,c, range(), glob() or a study's "
                      "sweep.params; tuning with Optuna is `disco tune`"),
    ("hydra/launcher", "disco sends runs to Ray itself: ray.address=local|auto|host:port, or "
                       "sweep.serial=true for none"),
    ("hydra.launcher", "disco sends runs to Ray itself: ray.address=local|auto|host:port, or "
                       "sweep.serial=true for none"),
    ("hydra.run", "results go to <results_dir>/<study>/runs/<key>/: set results_dir= and study="),
    ("hydra.sweep", "results go to <results_dir>/<study>/runs/<key>/: set results_dir= and "
                    "study="),
    ("hydra.output_subdir", "each run's config.yaml and provenance.json are in its run dir"),
    ("hydra.searchpath", "add a config folder with --config-dir DIR (or $DISCO_CONF_DIR)"),
    ("hydra.mode", "-m (--multirun) sweeps"),
    ("hydra/job_logging", "a run's error is in its error.txt; disco writes no job logs"),
    ("hydra/hydra_logging", "a run's error is in its error.txt; disco writes no job logs"),
    ("hydra.job", "a run's working directory is not changed; its files are in its run dir"),
)


def _hydra_key(text: str) -> str | None:
    """The Hydra key an override sets (``+hydra/sweeper=x`` -> ``hydra/sweeper``), else None."""
    key = text.lstrip("+~").split("=", 1)[0].split("@", 1)[0].strip()
    if key == "hydra" or key.startswith(("hydra.", "hydra/")):
        return key
    return None


def hydra_error(what: str, key: str) -> PlanError:
    hint = next((h for prefix, h in _HYDRA_HINTS if key.startswith(prefix)),
                "see `disco --help` and docs/framework.md")
    return PlanError(f"{what}: disco is not a @hydra.main app, so Hydra's own settings "
                     f"(hydra.*, hydra/...) do not apply; {hint}")


def reject_hydra(overrides: Sequence[str]) -> None:
    """Any ``hydra.*`` / ``hydra/...`` override (with or without ``+``) is an error with a hint."""
    for text in overrides:
        key = _hydra_key(text)
        if key is not None:
            raise hydra_error(text, key)


@contextmanager
def _hydra(search: SearchPath) -> Iterator[None]:
    """Hydra initialized on ``search`` (what ``initialize_config_dir`` does for one folder)."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    version.setbase("1.3")
    try:
        csp = create_config_search_path(search_path_dir=str(search[-1].path))
        for c in search[:-1]:  # before conf/ ("main"), in priority order
            csp.prepend(provider=c.provider, path=f"file://{c.path}", anchor="main")
        Hydra.create_main_hydra2(task_name="disco", config_search_path=csp)
        yield
    finally:
        restore_gh_from_backup(backup)


def compose_dictconfig(overrides: list[str], search: SearchPath | None = None) -> DictConfig:
    """Compose the primary config with Hydra; the result keeps Hydra's ``hydra`` node.

    Costs ~50-100 ms, so the sweep planner calls it once per distinct group selection, and
    applies value overrides itself (``plan.Planner``).
    """
    from hydra import compose as hydra_compose

    schema.register()
    search = search or search_path()
    with _hydra(search):
        cfg = hydra_compose(config_name="config", overrides=list(overrides),
                            return_hydra_config=True)
    _check_hydra_node(cfg, search)
    return cfg


def _hydra_node(cfg: DictConfig) -> dict[str, Any]:
    """What a config file can set in the ``hydra`` node (job-time bookkeeping left out)."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert isinstance(data, dict)
    for k in ("overrides", "runtime"):
        data.pop(k, None)
    data.get("job", {}).pop("override_dirname", None)
    choices = {str(k): v for k, v in cfg.hydra.runtime.choices.items()
               if str(k).startswith("hydra/")}
    return {"node": data, "choices": choices}


@cache
def _default_hydra_node(search: SearchPath) -> dict[str, Any]:
    from hydra import compose as hydra_compose

    with _hydra(search):
        return _hydra_node(hydra_compose(config_name="config", return_hydra_config=True))


@cache
def _mentions_hydra(search: SearchPath) -> bool:
    """Does any config file of the search path say ``hydra`` at all? (If not, none sets it.)"""
    return any("hydra" in f.read_text(errors="replace")
               for c in search for f in c.path.rglob("*.yaml"))


def _check_hydra_node(cfg: DictConfig, search: SearchPath) -> None:
    """A config file that sets Hydra's own settings (``defaults: [override hydra/sweeper: x]``,
    ``hydra: {run: {dir: ...}}``) is refused like the same override on the command line.

    Comparing with Hydra's defaults costs a composition, so it is only done when some file of
    the search path mentions ``hydra``."""
    if not _mentions_hydra(search):
        return
    got, default = _hydra_node(cfg), _default_hydra_node(search)
    for group, option in got["choices"].items():
        if default["choices"].get(group) != option:
            raise hydra_error(f"{group}={option} (in a config file)", group)
    diff = _first_difference(got["node"], default["node"], "hydra")
    if diff is not None:
        raise hydra_error(f"{diff} (set in a config file)", diff)


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in dict.fromkeys([*a, *b]):
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}")
            if d is not None:
                return d
        return None
    return None if a == b else path


def choices_of(cfg: DictConfig) -> dict[str, str | None]:
    """Selected option per config group (``machine: origin2000_32`` ...), Hydra's own groups out."""
    choices = cfg.hydra.runtime.choices
    return {
        str(k): (None if v is None else str(v))
        for k, v in choices.items()
        if not str(k).startswith("hydra") and k != schema.SCHEMA_NAME
    }


def drop_hydra(cfg: DictConfig) -> DictConfig:
    """Remove the ``hydra`` node in place (it holds job-time interpolations that cannot resolve)."""
    from omegaconf import open_dict

    if "hydra" in cfg:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """Resolved plain dict without the ``hydra`` node."""
    from omegaconf import OmegaConf

    if "hydra" in cfg:
        cfg = drop_hydra(cfg.copy())
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert isinstance(data, dict)
    return data


SIZES = ("small", "full")


def apply_size(overrides: list[str], search: SearchPath | None = None) -> list[str]:
    """``size=full +experiment=X`` -> ``+experiment=X_full``; ``size=small`` is the study itself.

    Each study's full size is its own file (``conf/experiment/<study>_full.yaml``, results in
    ``results/<study>_full/``). Hydra's defaults list cannot pick it from another selection made
    on the command line (``${size}`` only resolves against earlier choices of the same config), so
    the driver maps ``size`` to the file name before composing. A bad size, a ``size`` without a
    study, or a study without a full size is an error naming ``size``.
    """
    from disco.config import ConfigError
    from disco.framework.tracing import apply_shorthand

    overrides = apply_shorthand(overrides)  # trace=true: the other shorthand, on the same path
    sizes = [o for o in overrides if o.lstrip("+").split("=", 1)[0] == "size" and "=" in o]
    if not sizes:
        return list(overrides)
    size = sizes[-1].split("=", 1)[1]
    if size not in SIZES:
        raise ConfigError("size", size, f"expected one of {', '.join(SIZES)}")
    out = [o for o in overrides if o not in sizes]
    studies = [i for i, o in enumerate(out) if o.lstrip("+").split("=", 1)[0] == "experiment"]
    if not studies:
        raise ConfigError("size", size, "sizes belong to studies: add +experiment=<name>")
    if size == "small":
        return out
    known = set(group_options(search).get("experiment", ()))
    for i in studies:
        head, names = out[i].split("=", 1)
        full = []
        for name in names.split(","):
            name = name.strip()
            target = name if name.endswith("_full") else f"{name}_full"
            if target not in known:
                raise ConfigError("size", size, f"study '{name}' has no full size "
                                  f"(no conf/experiment/{target}.yaml)")
            full.append(target)
        out[i] = f"{head}={','.join(full)}"
    return out


def compose(overrides: list[str] | None = None,
            config_dirs: Sequence[str | Path] = ()) -> SimConfig:
    """One validated SimConfig from ``conf/`` and Hydra overrides (``compose(["machine=
    origin2000_128"])``; none: the default config).

    Exactly what the planner gives the first run of the same command line (seed aside: the
    planner gives replicate 0 its spawned seed): value overrides are applied to the unresolved
    config and ``${...}`` is resolved once, as Hydra's compose does. Framework keys (study,
    sweep, ray, results_dir) are accepted and dropped; sweeps (``a=1,2``) are an error here, as
    they are without ``-m``.
    """
    from disco.config import SimConfig

    overrides = list(overrides or [])
    reject_hydra(overrides)
    search = search_path(config_dirs)
    sim, _ = schema.split_framework(
        to_container(compose_dictconfig(apply_size(list(overrides), search), search)))
    return SimConfig.from_dict(sim)
