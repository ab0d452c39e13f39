"""``conf/`` + overrides -> config, with Hydra's compose API (no ``@hydra.main``, no output dirs).

Hydra is used for what it is good at: config groups, defaults lists, the override grammar and
its error messages. Launching runs is ``disco.framework.sweep``'s job (see docs/framework.md).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disco.framework import schema

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from disco.config import SimConfig


def project_root() -> Path:
    """The checkout holding ``disco/`` and ``conf/`` (the package is installed editable)."""
    import disco

    return Path(disco.__file__).resolve().parent.parent


def conf_dir() -> Path:
    """``$DISCO_CONF_DIR`` if set, else ``<project>/conf``."""
    env = os.environ.get("DISCO_CONF_DIR")
    return Path(env).resolve() if env else project_root() / "conf"


@cache
def _group_names(root: str) -> frozenset[str]:
    return frozenset(p.name for p in Path(root).iterdir() if p.is_dir())


def group_names() -> frozenset[str]:
    """Config groups = sub-directories of ``conf/`` (``machine``, ``cells``, ``experiment`` ...)."""
    return _group_names(str(conf_dir()))


def compose_dictconfig(overrides: list[str]) -> DictConfig:
    """Compose the primary config with Hydra; the result keeps Hydra's ``hydra`` node.

    Costs ~50-100 ms, so the sweep planner calls it once per distinct group selection.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    schema.register()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="disco"):
        return hydra_compose(config_name="config", overrides=list(overrides),
                             return_hydra_config=True)


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


def apply_size(overrides: list[str]) -> list[str]:
    """``size=full +experiment=X`` -> ``+experiment=X_full``; ``size=small`` is the study itself.

    Each study's full size is its own file (``conf/experiment/<study>_full.yaml``, results in
    ``results/<study>_full/``). Hydra's defaults list cannot pick it from another selection made
    on the command line (``${size}`` only resolves against earlier choices of the same config), so
    the driver maps ``size`` to the file name before composing. A bad size, a ``size`` without a
    study, or a study without a full size is an error naming ``size``.
    """
    from disco.config import ConfigError

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
    known = {p.stem for p in (conf_dir() / "experiment").glob("*.yaml")}
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


def compose(overrides: list[str] | None = None) -> SimConfig:
    """One validated SimConfig from ``conf/`` and Hydra overrides (``compose(["machine=
    origin2000_128"])``; none: the default config).

    Framework keys (study, sweep, ray, results_dir) are accepted and dropped; sweeps
    (``a=1,2``) are a Hydra error here, as they are without ``-m``.
    """
    from disco.config import SimConfig

    overrides = list(overrides or [])
    sim, _ = schema.split_framework(to_container(compose_dictconfig(apply_size(overrides))))
    return SimConfig.from_dict(sim)
