"""Tab completion of ``disco``'s overrides (argcomplete): groups, their options, config keys.

Runs on every <TAB>, so it reads the config folders and the schema's dataclass defaults and
never imports Hydra: ``mach<TAB>`` -> ``machine=``, ``machine=o<TAB>`` -> its options,
``policy.ga<TAB>`` -> ``policy.gang=``, ``policy.gang=<TAB>`` -> ``true false``. Enable it with
``eval "$(disco --shell-completion bash)"`` (or argcomplete's ``register-python-argcomplete``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def config_keys() -> dict[str, Any]:
    """Every dotted key of the default config (SimConfig's and the framework's) -> its default."""
    from disco.config import SimConfig
    from disco.framework import schema
    from disco.framework.results import config_columns

    data: dict[str, Any] = SimConfig().to_dict()
    for name, section in (("sweep", schema.SweepConfig()), ("ray", schema.RayConfig())):
        data[name] = dataclasses.asdict(section)
    data.update(study="default", results_dir="results")
    keys = config_columns(data, prefix="")
    # Mappings that are empty by default (sweep.params, ray.runtime_env) are keys too.
    keys.update({"sweep.params": {}, "ray.runtime_env": {}})
    return keys


def default_groups() -> set[str]:
    """Groups the primary config's defaults list selects (the others are added with ``+``)."""
    import yaml

    from disco.framework.compose import conf_dir

    data = yaml.safe_load((conf_dir() / "config.yaml").read_text()) or {}
    return {k for item in data.get("defaults", []) if isinstance(item, dict) for k in item}


def candidates(prefix: str, config_dirs: Sequence[str | Path] = ()) -> list[str]:
    """What may follow ``prefix`` on a ``disco`` command line (one override)."""
    from disco.framework.compose import PlanError, group_options, search_path

    try:
        groups = group_options(search_path(config_dirs))
    except PlanError:
        groups = group_options(search_path())
    lead = prefix[:len(prefix) - len(prefix.lstrip("+~"))]
    body = prefix[len(lead):]
    if "=" in body:
        key, _, value = body.partition("=")
        if key in groups:
            options = groups[key]
        else:
            default = config_keys().get(key)
            options = ["true", "false"] if isinstance(default, bool) else []
        return [f"{lead}{key}={o}" for o in options if o.startswith(value)]
    chosen = default_groups()
    out = [f"{lead or ('' if g in chosen else '+')}{g}=" for g in groups if g.startswith(body)]
    out += [f"{lead}{k}=" if lead != "~" else f"~{k}" for k in config_keys() if k.startswith(body)]
    return sorted(dict.fromkeys(out))
