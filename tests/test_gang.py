"""Gang scheduling: a VM's non-idle VCPUs run together (PAPER.md, CPU management)."""

from conftest import small_config

from disco import simulate
from disco.runner import build
from disco.vmm.state import RUNNABLE, RUNNING

RAYTRACE_PAIR = {"workload": {"vms": [
    {"workload": "raytrace", "count": 2, "vcpus": 6, "work_s": 1.0},
    {"workload": "pmake", "count": 2, "vcpus": 2, "work_s": 1.0},
]}}


def test_gang_runs_all_nonidle_vcpus_together():
    mon = build(small_config(RAYTRACE_PAIR))
    checked = 0

    def gang_holds():
        nonlocal checked
        for vm in mon.vms:
            states = [v.state for v in vm.vcpus]
            if RUNNING in states:
                assert RUNNABLE not in states, f"{vm.name} runs part of its gang"
                checked += 1

    mon.loop.after_event = gang_holds
    mon.loop.run(until=5.0)
    assert checked > 100
    assert mon.gang.preemptions > 0  # the constraint was exercised under contention


def test_gang_off_wastes_cpu_on_spinning():
    on = simulate(small_config(RAYTRACE_PAIR)).metrics
    off = simulate(small_config({**RAYTRACE_PAIR, "policy": {"gang": False}})).metrics
    assert on["spin_waste_fraction"] == 0.0
    assert off["spin_waste_fraction"] > 0.05
    assert off["vm_runtime_mean_s"] > on["vm_runtime_mean_s"]


def test_single_vm_alone_runs_at_its_virtualized_rate():
    # One raytrace VM (never blocks) on an otherwise idle 8-CPU machine.
    cfg = small_config({"workload": {"vms": [{"workload": "raytrace", "vcpus": 4,
                                              "work_s": 2.0}]},
                        # memory placement costs nothing here (see tests/test_memory_*.py)
                        "policy": {"memory_stall_fraction": 0.0, "numa_replication": False}})
    r = simulate(cfg)
    # virtualization (trap + VCPU scaling) and the guest OS's contention over 4 VCPUs
    rate = 1.0 / (1.0 + 0.05 * (0.2 + 0.05 * 2)) / (1.0 + 0.05 * 0.15 * 2)
    assert abs(r.vms["runtime_s"][0] - 2.0 / rate) < 1e-3


def test_cpu_time_adds_up():
    m = simulate(small_config(RAYTRACE_PAIR)).metrics
    total = (m["cpu_utilization"] + m["idle_fraction"] + m["spin_waste_fraction"]
             + m["overhead_fraction"])
    assert abs(total - 1.0) < 1e-9
