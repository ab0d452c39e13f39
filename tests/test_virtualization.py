"""Virtualization overhead defaults reproduce the paper's reported range (PAPER.md [P]/[R])."""

from disco import SimConfig
from disco.policies.cellular_disco import CellularDisco


def _overhead(workload, vcpus):
    cfg = SimConfig()
    rate = CellularDisco(cfg.policy).virtualization_rate(cfg.workload.profiles[workload], vcpus)
    return 1.0 / rate - 1.0


def test_worst_case_is_9_percent_on_one_cpu_and_20_on_32():
    assert abs(_overhead("pmake", 1) - 0.09) < 0.005
    assert abs(_overhead("pmake", 32) - 0.20) < 0.01


def test_typical_overheads_are_under_10_percent():
    for workload in ("raytrace", "database", "webserver", "pmake"):
        assert _overhead(workload, 1) < 0.10
    assert _overhead("raytrace", 32) < 0.03
