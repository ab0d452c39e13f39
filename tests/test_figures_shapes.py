"""Shape checks at small size: the direction of each paper result, not its numbers.

Each runs ``simulate`` directly (serial, a few tenths of a second per run) on a config composed
from conf/ as the studies compose theirs.
"""

from __future__ import annotations

from disco import simulate
from disco.framework.compose import compose


def metrics(*overrides: str) -> dict:
    return simulate(compose(list(overrides))).metrics


def test_fixed_partitions_use_the_cpus_less_than_cellular_disco_under_a_shifting_load():
    for cells in ("cells_2", "cells_8"):
        common = ("workload=mix_shifting_2", f"cells={cells}", "sim.duration_s=40")
        cd = metrics("policy=cellular_disco", *common)
        fp = metrics("policy=fixed_partition", *common)
        assert fp["cpu_utilization"] < cd["cpu_utilization"], cells


def test_fixed_partitions_lose_utilisation_on_the_original_shifting_mix_too():
    common = ("workload=mix_shifting", "cells=cells_8", "sim.duration_s=40")
    assert (metrics("policy=fixed_partition", *common)["cpu_utilization"]
            < metrics("policy=cellular_disco", *common)["cpu_utilization"])


def test_gang_scheduling_off_wastes_more_cpu_spinning_on_raytrace():
    # 6 x 8-VCPU Raytrace VMs on 32 CPUs: VCPUs get descheduled, so siblings spin without gang.
    common = ("workload=raytrace", "workload.vms.0.count=6", "workload.vms.0.spacing_s=0.5",
              "sim.duration_s=20")
    on = metrics("policy.gang=true", *common)["spin_waste_fraction"]
    off = metrics("policy.gang=false", *common)["spin_waste_fraction"]
    assert off > on


def test_one_cell_loses_more_vms_per_fault_than_eight_cells():
    common = ("faults=one_node", "sim.duration_s=20")
    eight = metrics("policy=cellular_disco", "cells=cells_8", *common)
    one = metrics("policy=disco_one_cell", *common)
    assert eight["faults_injected"] == one["faults_injected"] == 1
    assert one["vms_lost"] > eight["vms_lost"] > 0


def test_recovery_time_rises_with_memory_per_node():
    times = [metrics("faults=one_node", "sim.duration_s=12",
                     f"machine.memory_per_node_mb={mb}")["recovery_time_ms_max"]
             for mb in (128, 512, 2048)]
    assert times[0] < times[1] < times[2]


def test_cellular_disco_costs_more_than_the_native_smp_os_but_within_a_third():
    for solo in ("solo_1cpu", "solo_32cpu"):
        common = (f"workload={solo}", "workload.vms.0.workload=pmake", "sim.duration_s=15")
        cd = metrics("policy=cellular_disco", *common)["vm_runtime_mean_s"]
        smp = metrics("policy=smp_os", *common)["vm_runtime_mean_s"]
        assert 1.0 < cd / smp < 1.33, solo
