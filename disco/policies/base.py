"""The policy interface and the registry that picks one by ``policy.name``.

A policy variant is a small class plus a YAML file in ``conf/policy/``.
"""

from __future__ import annotations

from typing import Protocol

from disco.config import PolicyConfig, SimConfig, WorkloadProfile


class Policy(Protocol):
    name: str

    def virtualization_rate(self, profile: WorkloadProfile, vcpus: int) -> float:
        """Guest progress per CPU-second once the monitor's trap handling is paid."""
        ...


def make_policy(cfg: SimConfig) -> Policy:
    from disco.policies.cellular_disco import CellularDisco

    registry = {"cellular_disco": CellularDisco}
    return registry[cfg.policy.name](cfg.policy)


__all__ = ["Policy", "PolicyConfig", "make_policy"]
