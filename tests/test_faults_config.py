"""Bad fault configuration fails before the run, naming the key and the value."""

import pytest

from disco import ConfigError, SimConfig, simulate


def _cfg(faults):
    return SimConfig.from_dict({"faults": faults})


def test_a_fault_on_a_node_that_does_not_exist_is_rejected():
    with pytest.raises(ConfigError, match=r"faults.scheduled\[0\].node") as err:
        _cfg({"scheduled": [{"type": "node", "node": 16, "at_s": 1.0}]})
    assert err.value.value == 16


def test_a_fault_on_a_cell_that_does_not_exist_is_rejected():
    with pytest.raises(ConfigError, match=r"faults.scheduled\[0\].cell"):
        _cfg({"scheduled": [{"type": "router", "cell": 8}]})


def test_negative_fault_rates_are_rejected():
    for key in ("node_rate", "router_rate", "link_rate", "firmware_rate", "software_rate"):
        with pytest.raises(ConfigError, match=f"faults.{key}") as err:
            _cfg({key: -0.1})
        assert err.value.value == -0.1


def test_an_unknown_fault_type_is_rejected():
    with pytest.raises(ConfigError, match=r"faults.scheduled\[0\].type") as err:
        _cfg({"scheduled": [{"type": "meteor", "node": 0}]})
    assert err.value.value == "meteor"


def test_a_software_fault_must_name_an_existing_vm():
    with pytest.raises(ConfigError, match=r"faults.scheduled\[0\].vm"):
        _cfg({"scheduled": [{"type": "software", "vm": 99}]})


def test_a_hardware_fault_names_exactly_one_place():
    with pytest.raises(ConfigError, match=r"faults.scheduled\[0\].node"):
        _cfg({"scheduled": [{"type": "node"}]})
    with pytest.raises(ConfigError, match=r"faults.scheduled\[0\].node"):
        _cfg({"scheduled": [{"type": "node", "node": 1, "cell": 0}]})


def test_unknown_kill_policy_negative_time_and_bad_evacuation_are_rejected():
    with pytest.raises(ConfigError, match="faults.kill_policy"):
        _cfg({"kill_policy": "eventually"})
    with pytest.raises(ConfigError, match=r"faults.scheduled\[0\].at_s"):
        _cfg({"scheduled": [{"type": "link", "node": 0, "at_s": -1.0}]})
    with pytest.raises(ConfigError, match=r"faults.evacuate\[0\].cell"):
        _cfg({"evacuate": [{"cell": 9, "at_s": 1.0}]})
    with pytest.raises(ConfigError, match="faults.scan_mb_per_s"):
        _cfg({"scan_mb_per_s": 0})
    with pytest.raises(ConfigError, match=r"faults.evacuate\[0\].return_s"):
        _cfg({"evacuate": [{"cell": 1, "at_s": 1.0, "return_s": -2.0}]})
    with pytest.raises(ConfigError, match=r"faults.evacuate\[0\].cel="):
        _cfg({"evacuate": [{"cel": 1}]})  # a typo is an unknown key


def test_validation_runs_before_the_clock_starts():
    cfg = SimConfig()
    cfg.faults.node_rate = -1.0
    with pytest.raises(ConfigError, match="faults.node_rate"):
        simulate(cfg)


def test_fault_metrics_are_present_and_zero_without_faults():
    m = simulate(SimConfig.from_dict({"sim": {"duration_s": 2.0}})).metrics
    for key in ("faults_injected", "faults_hardware", "faults_software", "vms_lost",
                "vms_lost_dependent", "faults_contained", "recovery_time_ms_mean",
                "recovery_time_ms_max", "work_lost_cpu_s"):
        assert m[key] == 0
