"""Gang scheduling: a VM's non-idle VCPUs run together (PAPER.md, CPU management)."""

from conftest import small_config
from parts import BUSY, world

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


# -- the gang scheduler alone, on a few CPUs by hand ------------------------------------------

def test_gang_scheduler_alone_starts_a_whole_gang_at_once():
    w = world(nodes=1, cpus_per_node=2)
    gang = w.gang()
    vm = w.queue(w.vm(2), [0, 1])
    gang.kick(w.cpus[0])  # one free CPU chooses: it starts the gang on both CPUs
    w.loop.run(until=1e-3)
    assert [v.state for v in vm.vcpus] == [RUNNING, RUNNING] and vm.running
    assert [c.current for c in w.cpus] == vm.vcpus
    assert gang.preemptions == 0


def test_gang_scheduler_alone_never_starts_part_of_a_gang():
    # Two 2-VCPU gangs on two CPUs: whichever runs holds both, the other waits whole.
    w = world(nodes=1, cpus_per_node=2)
    gang = w.gang()
    a = w.queue(w.vm(2, work_s=0.05), [0, 1])
    b = w.queue(w.vm(2, work_s=0.05), [1, 0])
    gang.kick(w.cpus[0])
    gang.kick(w.cpus[1])
    seen = []

    def check():
        for vm in (a, b):
            states = {v.state for v in vm.vcpus}
            assert not (RUNNING in states and RUNNABLE in states), "half a gang runs"
        seen.append((a.running, b.running))

    w.loop.after_event = check
    w.loop.run(until=1.0)
    assert (True, False) in seen and (False, True) in seen  # they took turns
    assert a.status == b.status == "done"


def test_gang_scheduler_alone_yields_a_busy_gang_at_the_end_of_its_slice_to_a_waiter():
    w = world(nodes=1, cpus_per_node=2)
    gang = w.gang(slice_ms=10.0)
    a = w.queue(w.vm(2), [0, 1])
    gang.kick(w.cpus[0])
    w.loop.run(until=1e-3)
    b = w.queue(w.vm(2), [0, 1])
    gang.ensure_slice_on(w.cpus[0])  # someone waits behind the running gang
    w.loop.run(until=9e-3)
    assert a.running and not b.running
    w.loop.run(until=11e-3)  # the slice ended at 10 ms: the waiter has the CPUs
    assert b.running and not a.running and a.wait_since == 10e-3


def test_gang_off_runs_each_vcpu_alone_and_its_running_siblings_spin():
    w = world(nodes=1, cpus_per_node=2, gang=False)
    gang = w.gang(gang=False)
    vm = w.queue(w.vm(3), [0, 1, 0])  # three VCPUs on two CPUs: one always waits
    gang.kick(w.cpus[0])
    gang.kick(w.cpus[1])
    w.loop.run(until=1e-3)
    running = [v for v in vm.vcpus if v.state == RUNNING]
    assert len(running) == 2 and all(v.spinning for v in running)
    assert all(v.rate == 1.0 - BUSY.spin_sensitivity for v in running)
