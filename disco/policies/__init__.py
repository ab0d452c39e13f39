"""Policies: what distinguishes Cellular Disco from its baselines, chosen by ``policy.name``."""

from disco.policies.base import Policy, make_policy

__all__ = ["Policy", "make_policy"]
