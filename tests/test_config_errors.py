import dataclasses
import typing

import pytest

from disco import ConfigError, SimConfig, simulate
from disco.config import Range, Within


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"workload": {"vms": [{"workload": "quake"}]}}, "workload.vms[0].workload"),
        ({"machine": {"nodes": 0}}, "machine.nodes"),
        ({"machine": {"cpus_per_node": 0}}, "machine.cpus_per_node"),
        ({"cells": {"count": 3}}, "cells.count"),
        ({"policy": {"time_slice_ms": -1}}, "policy.time_slice_ms"),
        ({"policy": {"nme": "x"}}, "policy.nme"),
        ({"policy": {"gang": "yes"}}, "policy.gang"),
        ({"workload": {"vms": [{"vcpus": 33}]}}, "workload.vms[0].vcpus"),
        ({"policy": {"overcommit_vcpus": False}}, "policy.overcommit_vcpus"),
        ({"sim": {"duration_s": 0}}, "sim.duration_s"),
        ({"workload": {"profiles": {"pmake": {"io_prob": 1.5}}}},
         "workload.profiles.pmake.io_prob"),
    ],
)
def test_bad_config_names_key_and_value(data, key):
    with pytest.raises(ConfigError) as err:
        SimConfig.from_dict(data)
    assert err.value.key == key
    assert key in str(err.value)


def test_validation_happens_before_the_clock_starts():
    cfg = SimConfig()
    cfg.cells.count = 5
    with pytest.raises(ConfigError, match="cells.count"):
        simulate(cfg)


def test_partial_profile_override_keeps_other_profiles():
    cfg = SimConfig.from_dict({"workload": {"profiles": {"raytrace": {"burst_ms": 100.0}}}})
    assert cfg.workload.profiles["raytrace"].burst_ms == 100.0
    assert set(cfg.workload.profiles) == {"raytrace", "pmake", "database", "webserver"}


def _config_classes(tp=SimConfig, seen=None):
    """Every config dataclass reachable from SimConfig (sections, list items, dict values)."""
    seen = {} if seen is None else seen
    if tp in seen:
        return seen
    seen[tp] = None
    for hint in typing.get_type_hints(tp).values():
        for arg in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(arg):
                _config_classes(arg, seen)
    return seen


def test_every_numeric_field_declares_what_it_accepts():
    """A field added later is checked by default: a number must declare its ``Range`` (or,
    with ``Within``, that its bounds depend on other fields and validate() checks them)."""
    undeclared = []
    for tp in _config_classes():
        for name, hint in typing.get_type_hints(tp, include_extras=True).items():
            base, meta = hint, ()
            if typing.get_origin(hint) is typing.Annotated:
                base, *meta = typing.get_args(hint)
            numbers = {int, float} & {a for a in (base, *typing.get_args(base))}
            if numbers and not any(isinstance(x, Range | Within) for x in meta):
                undeclared.append(f"{tp.__name__}.{name}")
    assert not undeclared, f"numeric fields with no declared range: {undeclared}"


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("sim.duration_s", 0.0, "must be > 0"),
    ("machine.hop_latency_ns", -1.0, "must be >= 0"),
    ("workload.profiles.pmake.io_prob", 1.5, "must be in [0, 1]"),
    ("policy.cache_warmup_slowdown", 0.0, "must be in (0, 1]"),
    ("workload.vms[1].spacing_s", float("inf"), "must be >= 0"),
    ("faults.evacuate[0].return_s", -2.0, "must be >= 0"),
])
def test_a_declared_range_is_enforced_on_nested_fields_with_the_key_and_the_reason(
        key, value, reason):
    cfg = SimConfig.from_dict({"faults": {"evacuate": [{"cell": 1}]}})
    path = key.replace("[", ".").replace("]", "").split(".")
    obj = cfg
    for part in path[:-1]:
        obj = obj[int(part)] if part.isdigit() else (obj[part] if isinstance(obj, dict)
                                                      else getattr(obj, part))
    setattr(obj, path[-1], value)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert (err.value.key, err.value.reason) == (key, reason)


def test_a_field_that_may_be_null_is_checked_only_when_set():
    cfg = SimConfig.from_dict({"faults": {"cell_repair_s": None, "data_follow_s": 0.0}})
    cfg.validate()
    cfg.faults.cell_repair_s = -1.0
    with pytest.raises(ConfigError, match="faults.cell_repair_s"):
        cfg.validate()
