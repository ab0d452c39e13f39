"""Shared helpers for the simulator's tests."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from disco import SimConfig, native

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


@pytest.fixture(scope="session")
def paper_results(tmp_path_factory) -> Path:
    """Every paper study and the knob sensitivity at a reduced size, run once per session
    (framework_helpers/paper_results.py)."""
    from framework_helpers.paper_results import run_all

    return run_all(tmp_path_factory.mktemp("paper_results"))


@pytest.fixture(scope="session")
def paper_report(paper_results, tmp_path_factory):
    """The report of ``paper_results``: (its directory, its sections)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
    import report

    out = tmp_path_factory.mktemp("paper_report")
    _, sections = report.build(paper_results, "small", out)
    return out, sections


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """A test marked ``python_sources`` patches methods of the core's objects, which compiled
    classes refuse (``disco.native``): when the core runs compiled, run the test in a fresh
    pytest on the Python sources instead, and let its outcome be this test's."""
    if pyfuncitem.get_closest_marker("python_sources") is None or not native.STATE.active:
        return None
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DISCO_PURE": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          pyfuncitem.nodeid], cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"on the Python sources (DISCO_PURE=1):\n{out.stdout[-6000:]}{out.stderr}",
                    pytrace=False)
    return True
