"""Bad memory configuration fails before the run, naming the key and the value."""

import pytest

from disco import ConfigError, SimConfig, simulate


@pytest.mark.parametrize(
    ("data", "key", "value"),
    [
        # thresholds out of order: a cell would lend what it must then borrow back
        ({"policy": {"borrow_trigger_mb": 32, "lend_floor_mb": 16}}, "policy.lend_floor_mb", 16),
        # negative or zero sizes
        ({"policy": {"borrow_trigger_mb": -4}}, "policy.borrow_trigger_mb", -4),
        ({"policy": {"lend_floor_mb": -1}}, "policy.lend_floor_mb", -1),
        ({"policy": {"borrow_unit_mb": 0}}, "policy.borrow_unit_mb", 0),
        ({"policy": {"chunk_mb": -4}}, "policy.chunk_mb", -4),
        ({"policy": {"chunk_mb": 3}}, "policy.chunk_mb", 3),  # must divide node memory
        ({"policy": {"disk_mb_per_s": 0}}, "policy.disk_mb_per_s", 0),
        ({"policy": {"disk_seek_ms": -1}}, "policy.disk_seek_ms", -1),
        ({"policy": {"paging_disks": 0}}, "policy.paging_disks", 0),
        ({"policy": {"memory_stall_fraction": 1.5}}, "policy.memory_stall_fraction", 1.5),
        ({"policy": {"borrow_policy": "always"}}, "policy.borrow_policy", "always"),
        # issue 18's knobs: loans take time, faults per unit of work, settling, locality
        ({"policy": {"loan_mb_per_s": 0}}, "policy.loan_mb_per_s", 0),
        ({"policy": {"working_set_touch_s": 0}}, "policy.working_set_touch_s", 0),
        ({"policy": {"numa_settle_ms": -1}}, "policy.numa_settle_ms", -1),
        ({"workload": {"profiles": {"database": {"private_access_fraction": 1.5}}}},
         "workload.profiles.database.private_access_fraction", 1.5),
        ({"workload": {"vms": [{"memory_mb": -256}]}}, "workload.vms[0].memory_mb", -256),
        ({"workload": {"profiles": {"database": {"shared_mb": -1}}}},
         "workload.profiles.database.shared_mb", -1),
        ({"workload": {"profiles": {"pmake": {"free_per_s": 2.0}}}},
         "workload.profiles.pmake.free_per_s", 2.0),
        # a VM larger than the whole machine (8 GB) with paging off
        ({"policy": {"paging": False},
          "workload": {"vms": [{"workload": "database", "memory_mb": 9000}]}},
         "workload.vms[0].memory_mb", 9000),
        # ... or, with no borrowing, larger than its home cells (1 GB for 4 VCPUs)
        ({"policy": {"paging": False, "borrow_policy": "none"},
          "workload": {"vms": [{"vcpus": 4, "memory_mb": 2048}]}},
         "workload.vms[0].memory_mb", 2048),
    ],
)
def test_bad_memory_config_names_key_and_value(data, key, value):
    with pytest.raises(ConfigError) as err:
        SimConfig.from_dict(data)
    assert err.value.key == key
    assert err.value.value == value
    assert key in str(err.value)


def test_a_vm_larger_than_the_machine_is_fine_when_paging_is_on():
    cfg = SimConfig.from_dict({"workload": {"vms": [{"workload": "database",
                                                     "memory_mb": 9000}]}})
    assert cfg.workload.vms[0].memory_mb > cfg.machine.nodes * cfg.machine.memory_per_node_mb


def test_bad_memory_config_fails_before_the_clock_starts():
    cfg = SimConfig()
    cfg.policy.lend_floor_mb = 8
    with pytest.raises(ConfigError, match="policy.lend_floor_mb"):
        simulate(cfg)
