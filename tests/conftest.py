"""Shared helpers for the simulator's tests."""

from __future__ import annotations

import copy
from typing import Any

from disco import SimConfig

SMALL = {
    "machine": {"nodes": 4, "cpus_per_node": 2},
    "cells": {"count": 2},
    "sim": {"duration_s": 5.0, "check_invariants": True},
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def small_config(extra: dict[str, Any] | None = None) -> SimConfig:
    """A small machine (4 nodes x 2 CPUs, 2 cells, invariants checked) plus ``extra``."""
    return SimConfig.from_dict(merge(SMALL, extra or {}))


def without_wall_time(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "wall_time_s"}
