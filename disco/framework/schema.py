"""The structured config Hydra validates against: SimConfig's own dataclasses plus framework keys.

The top-level schema is built from ``dataclasses.fields(SimConfig)`` at import time, so a section
the simulator adds later (memory knobs, ``faults`` ...) is picked up with no change here: one
source of truth for names, types and defaults. Fields declare their ranges with ``Annotated``
(``disco.config.Range``), which OmegaConf reads as the plain type: ranges and cross-field rules
are ``SimConfig.validate()``'s; OmegaConf gives the type and unknown-key errors at compose time.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from disco.config import SimConfig

SCHEMA_NAME = "disco_schema"
DEFAULT_TASK = "disco.runner:simulate"


@dataclass(slots=True)
class SweepConfig:
    """How a sweep runs; none of this changes a run's result, so none of it is in the run key."""

    force: bool = False  # re-run runs whose results are already complete
    serial: bool = False  # run in this process, no Ray (same as ray.address=none)
    batch_size: int | None = None  # runs per Ray task; null: ~0.25 s of runs, measured
    task: str = DEFAULT_TASK  # "module:function" taking a SimConfig, returning a SimResult
    progress: bool = True  # live progress bar on stderr
    fail_fast: bool = False  # stop at the first failed run (exit 1); finished runs are kept
    # A study's own sweep: {"dotted.key or group": "a,b,c"}, expanded like `-m key=a,b,c`.
    # Command-line overrides of the same key win.
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RayConfig:
    """Where the runs go. ``local`` starts a private Ray for this sweep and stops it after."""

    address: str | None = "local"  # local | auto | <host:port> | ray://... | none (serial)
    num_cpus: int | None = None  # local only; null: all cores (os.cpu_count())
    object_store_memory_mb: int | None = 256  # local only; runs pass small dicts, not arrays
    temp_dir: str | None = None  # local only; null: a short dir under /tmp (socket path limit)
    ship_code: bool = True  # when attaching: runtime_env working_dir = the project
    node_ip_address: str | None = None  # when attaching; null: 127.0.0.1 for a loopback head
    runtime_env: dict[str, Any] = field(default_factory=dict)  # merged into the runtime_env


@dataclass(slots=True)
class TraceConfig:
    """Which runs also write a trace for Perfetto (``disco/trace.py``, docs/trace.md). A trace
    changes no result, so none of this is in the run key: a complete run asked for a trace it
    does not have runs again (same metrics) to write it. ``trace=true`` is ``trace.runs=all``,
    ``trace=false`` ``trace.runs=none``."""

    runs: str = "none"  # none | first (replicate 0 of each config) | all
    window: list[float] | None = None  # [from_s, to_s] of simulated time; null: the whole run
    counter_ms: float = 10.0  # how often the counter tracks are sampled
    gzip: bool = False  # trace.json.gz instead of trace.json (both viewers open either)


FRAMEWORK_KEYS = ("study", "results_dir", "sweep", "ray", "sensitivity", "trace")


def _schema_fields() -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(SimConfig)
    out: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(SimConfig):
        if f.default_factory is not dataclasses.MISSING:
            default = field(default_factory=f.default_factory)
        else:
            default = field(default=f.default)
        out.append((f.name, hints[f.name], default))
    out += [
        ("study", str, field(default="default")),
        ("results_dir", str, field(default="results")),
        ("sweep", SweepConfig, field(default_factory=SweepConfig)),
        ("ray", RayConfig, field(default_factory=RayConfig)),
        ("trace", TraceConfig, field(default_factory=TraceConfig)),
        # A one-at-a-time study's table (scenarios, knobs with an expected direction each):
        # conf/experiment/sensitivity.yaml. The planner runs no such study itself; its runner,
        # experiments/one_at_a_time.py, plans one ordinary sweep per knob.
        ("sensitivity", dict[str, Any], field(default_factory=dict)),
    ]
    return out


DiscoConfig = dataclasses.make_dataclass("DiscoConfig", _schema_fields(), slots=True)
DiscoConfig.__module__ = __name__
DiscoConfig.__doc__ = "SimConfig's sections plus the framework keys: the whole of ``conf/``."

_registered = False


def register() -> None:
    """Put the schema in Hydra's ConfigStore (idempotent); ``conf/config.yaml`` lists it first."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=DiscoConfig)
    _registered = True


def sim_section_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(SimConfig))


def split_framework(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a plain container into (SimConfig dict, framework dict)."""
    sections = set(sim_section_names())
    sim: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for k, v in data.items():
        if k in sections:
            sim[k] = v
        else:
            rest[k] = v
    return sim, rest
