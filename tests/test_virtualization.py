"""Virtualization overhead defaults reproduce the paper's reported range (PAPER.md [P]/[R]).

The paper normalises run time on Cellular Disco to the same OS run natively on the same CPUs;
here that is the ratio of the ``smp_os`` rate on an n-CPU machine to the ``cellular_disco``
rate of an n-VCPU VM (the guest OS's own kernel contention cancels out).
"""

from disco import SimConfig
from disco.policies import make_policy


def _overhead(workload, cpus):
    machine = {"nodes": cpus, "cpus_per_node": 1}
    mix = {"vms": [{"workload": workload, "vcpus": cpus}]}
    cd = SimConfig.from_dict({"machine": machine, "cells": {"count": 1}, "workload": mix})
    smp = SimConfig.from_dict({"machine": machine, "policy": {"name": "smp_os"},
                               "workload": mix})
    profile = cd.workload.profiles[workload]
    native = make_policy(smp).virtualization_rate(profile, cpus)
    virtual = make_policy(cd).virtualization_rate(profile, cpus)
    return native / virtual - 1.0


def test_worst_case_is_9_percent_on_one_cpu_and_20_on_32():
    assert abs(_overhead("pmake", 1) - 0.09) < 0.005
    assert abs(_overhead("pmake", 32) - 0.20) < 0.01


def test_typical_overheads_are_under_10_percent():
    for workload in ("raytrace", "database", "webserver", "pmake"):
        assert _overhead(workload, 1) < 0.10
    assert _overhead("raytrace", 32) < 0.03
