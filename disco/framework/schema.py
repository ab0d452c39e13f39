"""The structured config Hydra validates against: SimConfig's own dataclasses plus framework keys.

The top-level schema is built from ``dataclasses.fields(SimConfig)`` at import time, so a section
the simulator adds later (memory knobs, ``faults`` ...) is picked up with no change here: one
source of truth for names, types and defaults. Fields declare their ranges with ``Annotated``
(``disco.config.Range``), which OmegaConf reads as the plain type: ranges and cross-field rules
are ``SimConfig.validate()``'s; OmegaConf gives the type and unknown-key errors at compose time.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any

from disco.config import ConfigError, Positive, SimConfig, build

SCHEMA_NAME = "disco_schema"
DEFAULT_TASK = "disco.runner:simulate"


@dataclass(slots=True)
class SweepConfig:
    """How a sweep runs; none of this changes a run's result, so none of it is in the run key."""

    force: bool = False  # re-run runs whose results are already complete
    serial: bool = False  # run in a child process, one run after another, no Ray
    # runs per Ray task; null: ~0.25 s of runs, measured
    batch_size: Annotated[int | None, Positive] = None
    task: str = DEFAULT_TASK  # "module:function" taking a SimConfig, returning a SimResult
    progress: bool = True  # live progress bar on stderr
    fail_fast: bool = False  # stop at the first failed run (exit 1); finished runs are kept
    # a run still going after this many seconds is stopped and recorded failed; null: no limit
    run_timeout_s: Annotated[float | None, Positive] = 3600.0
    # a sweep plans at most this many runs (each is planned in memory before any starts)
    max_runs: Annotated[int, Positive] = 20_000
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
    # When attaching: runtime_env working_dir = the project. null: yes, but for the cluster
    # `disco ray up` started with this Python (its workers import this code already).
    ship_code: bool | None = None
    node_ip_address: str | None = None  # when attaching; null: 127.0.0.1 for a loopback head
    runtime_env: dict[str, Any] = field(default_factory=dict)  # merged into the runtime_env


@dataclass(slots=True)
class TuneConfig:
    """How ``disco tune`` searches (docs/framework.md, Tuning); read by nothing else, so none of
    it is in a run key. What it optimises is the top-level ``objective`` and ``direction``."""

    trials: int = 20  # trials of the whole study: a resumed study runs only the missing ones
    sampler: str = "auto"  # auto (tpe; nsga2 for several objectives) | tpe | nsga2 | random
    seed: int = 0  # the sampler's seed: the same seed and trial batches, the same trials
    batch: int | None = None  # trials asked at once; null: 1 serial, else a run per Ray CPU
    population_size: int | None = None  # NSGA-II's; null: trials / 4, between 4 and 50
    baseline: bool = True  # trial 0 is the config's own values of the tuned keys (if inside)
    figures: bool = True  # history, Pareto front and importances under <study>/tune/
    # The search space: {"dotted.key or group": "int(interval(0,64))"}, in the override grammar
    # (interval, int(interval), tag(log, interval), choice, range), added to the study's
    # sweep.params (a grid's a,b,c: a choice). Command-line overrides of the same key win: a
    # search-space override replaces the entry, a value fixes the key; null drops them all.
    params: dict[str, Any] | None = field(default_factory=dict)


FRAMEWORK_KEYS = ("study", "results_dir", "sweep", "ray", "sensitivity", "objective",
                  "direction", "tune", "trace")
TUNE_KEYS = ("objective", "direction", "tune")  # read by `disco tune` only
# A study names the folder <results_dir>/<study>/: one path component, nothing to escape with.
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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
        # What `disco tune` optimises: a metric name or a list of them (several: a Pareto
        # front), and minimize | maximize for each (null: minimize). Checked by the tuner,
        # which knows the task's metric names; a str-or-list is not an OmegaConf type.
        ("objective", Any, field(default=None)),
        ("direction", Any, field(default=None)),
        ("tune", TuneConfig, field(default_factory=TuneConfig)),
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


def check_study(study: Any) -> str:
    """``study`` as a folder name, or a ConfigError: letters, digits, ``_-.``, one component."""
    if not isinstance(study, str) or not STUDY_NAME.fullmatch(study):
        raise ConfigError("study", study, "a study is a simple name (letters, digits and _ - ., "
                          "not starting with . or -): it is the folder <results_dir>/<study>/")
    return study


def check_framework(fw: dict[str, Any]) -> None:
    """The framework keys, typed like the simulator's: an unknown key (``+sweep.forse=true``),
    a wrong type or a value out of range is a ConfigError naming it."""
    for key, value in fw.items():
        if key not in FRAMEWORK_KEYS:
            raise ConfigError(key, value, "unknown key; the config has the simulator's sections ("
                              f"{', '.join(sim_section_names())}) and {', '.join(FRAMEWORK_KEYS)}")
    build(SweepConfig, fw.get("sweep", {}), "sweep")
    build(RayConfig, fw.get("ray", {}), "ray")
    build(TuneConfig, fw.get("tune") or {}, "tune")
    for key in ("study", "results_dir"):
        if not isinstance(fw.get(key), str) or not fw[key]:
            raise ConfigError(key, fw.get(key), "expected a non-empty string")
    check_study(fw["study"])


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
