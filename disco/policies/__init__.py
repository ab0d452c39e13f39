"""Policies: what distinguishes Cellular Disco from its baselines, chosen by ``policy.name``.

Importing this package registers every system with config validation
(``disco.config.register_policy``); ``make_policy`` makes the one a config names.
"""

from disco.config import SimConfig, policy_rules, register_policy
from disco.policies.base import System, os_contention_rate
from disco.policies.cellular_disco import CellularDisco, DiscoOneCell
from disco.policies.fixed_partition import FixedPartition
from disco.policies.smp_os import SmpOs
from disco.vmm.policy import Policy

SYSTEMS: tuple[type[System], ...] = (CellularDisco, DiscoOneCell, FixedPartition, SmpOs)
_BY_NAME = {system.name: system for system in SYSTEMS}
for _system in SYSTEMS:
    register_policy(_system)


def make_policy(cfg: SimConfig) -> Policy:
    """The system ``cfg.policy.name`` names (``ConfigError`` if none does)."""
    policy_rules(cfg.policy.name)
    return _BY_NAME[cfg.policy.name](cfg)


__all__ = ["SYSTEMS", "Policy", "System", "make_policy", "os_contention_rate"]
