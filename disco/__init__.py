"""disco: a simulator of Cellular Disco and the experiment framework around it.

``from disco import simulate, SimConfig`` is all a notebook needs. The framework (Hydra, Ray,
polars, seaborn) lives in ``disco.framework`` and is imported only when used.
The simulator core runs compiled when a current build exists (``disco.native``).

The names below are imported on first use (PEP 562), so a command that never simulates (the
CLI answering a re-run from its manifest, ``disco --help``) does not load the simulator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from disco import native

native.enable()  # before any core module is imported: it decides where they come from

from disco import config as _config  # noqa: E402  (after enable)

# Validation names systems that ``disco.policies`` registers: loaded on the first lookup.
_config.on_unknown_policy(lambda: importlib.import_module("disco.policies"))

if TYPE_CHECKING:
    from disco.config import ConfigError, SimConfig
    from disco.result import SimResult
    from disco.runner import simulate

__all__ = ["ConfigError", "SimConfig", "SimResult", "simulate"]
_WHERE = {"ConfigError": "disco.config", "SimConfig": "disco.config",
          "SimResult": "disco.result", "simulate": "disco.runner"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    if name == "policies":
        return importlib.import_module("disco.policies")
    raise AttributeError(f"module 'disco' has no attribute {name!r}")
