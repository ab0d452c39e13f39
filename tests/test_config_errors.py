import pytest

from disco import ConfigError, SimConfig, simulate


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
