"""Shared bits of the framework tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
FAST = ["sim.duration_s=1", "sim.sample_interval_s=0.5"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), e.get("PYTHONPATH")]))
    return e


def disco_subprocess(*args: str, cwd: Path = ROOT,
                     extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "disco.cli", *args], cwd=cwd,
                            env={**env(), **(extra_env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def runs_table(results: Path, study: str = "default") -> pl.DataFrame:
    return pl.read_parquet(results / study / "runs.parquet")


def metric_columns(df: pl.DataFrame) -> list[str]:
    """The simulator's metrics, minus the ones that measure the host, not the model."""
    from disco import SimConfig, simulate

    cfg = SimConfig()
    cfg.sim.duration_s = 0.5
    names = simulate(cfg).metrics
    return [c for c in names if c in df.columns and c != "wall_time_s"]
