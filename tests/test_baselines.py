"""Baselines: fixed hardware partitions, one SMP OS, Disco with one cell (PAPER.md, Results)."""

import pytest

from disco import ConfigError, SimConfig, simulate
from disco.hardware import Machine

# Load that moves: a first wave crowds cells 0-3, a second wave later crowds cells 4-7. The
# jobs run long enough (6 s of work, tens of seconds crowded) for a whole VM's memory copy
# (256 MB: 5.4 s) to pay: Cellular Disco balances across cells by moving whole VMs.
SHIFTING = {"vms": [
    {"workload": "pmake", "count": 6, "vcpus": 4, "work_s": 6.0, "home_cell": 0},
    {"workload": "raytrace", "count": 4, "vcpus": 4, "work_s": 6.0, "home_cell": 1},
    {"workload": "database", "count": 4, "vcpus": 4, "work_s": 6.0, "home_cell": 2},
    {"workload": "webserver", "count": 4, "vcpus": 4, "work_s": 4.5, "home_cell": 3},
    {"workload": "raytrace", "count": 4, "vcpus": 4, "work_s": 6.0, "home_cell": 4,
     "arrival_s": 4.0},
    {"workload": "database", "count": 4, "vcpus": 4, "work_s": 6.0, "home_cell": 5,
     "arrival_s": 4.0},
]}


def _run(policy):
    return simulate(SimConfig.from_dict({"workload": SHIFTING, "policy": policy,
                                         "sim": {"duration_s": 60.0}})).metrics


def test_cellular_disco_uses_the_machine_better_than_fixed_partitions_under_shifting_load():
    cd, fixed = _run({}), _run({"name": "fixed_partition"})
    assert fixed["migrations_remote"] == 0
    assert cd["migrations_remote"] > 0 and cd["balancer_vm_moves"] > 0
    assert cd["balancer_splits"] == 0  # no VM spread over cells to balance them
    assert cd["cpu_utilization"] > fixed["cpu_utilization"]
    assert cd["makespan_s"] < fixed["makespan_s"]


def test_fixed_partition_rejects_a_vm_larger_than_a_partition():
    with pytest.raises(ConfigError, match=r"workload.vms\[0\].vcpus"):
        SimConfig.from_dict({"policy": {"name": "fixed_partition"},
                             "workload": {"vms": [{"vcpus": 8}]}})


def test_smp_os_and_disco_one_cell_see_the_machine_as_one_cell():
    for name in ("smp_os", "disco_one_cell"):
        cfg = SimConfig.from_dict({"policy": {"name": name}})
        assert Machine.from_config(cfg).cells == 1


def test_smp_os_knows_its_locks_so_nothing_spins():
    m = _run({"name": "smp_os"})
    assert m["spin_waste_fraction"] == 0.0 and m["gang_preemptions"] == 0
