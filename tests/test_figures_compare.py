"""compare_policies on hand-made runs: the ratio, the CI and baseline matching."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "analysis"))

import compare_policies  # noqa: E402
import figures  # noqa: E402


def runs() -> pl.DataFrame:
    rows = []
    for policy, cells, util in (("fixed_partition", "cells_4", [0.4, 0.6]),
                                ("cellular_disco", "cells_4", [0.8, 1.0]),
                                ("fixed_partition", "cells_8", [0.2, 0.2]),
                                ("cellular_disco", "cells_8", [0.5, 0.7])):
        for rep, u in enumerate(util):
            rows.append({"status": "ok", "replicate": rep, "policy": policy, "cells": cells,
                         "machine": "origin2000_32", "cpu_utilization": u, "vms_lost": 0})
    rows.append({**rows[0], "status": "failed", "cpu_utilization": 99.0})
    return pl.DataFrame(rows)


def test_ratio_is_the_variant_mean_over_the_baseline_mean_of_the_same_other_values(tmp_path):
    path = tmp_path / "runs.parquet"
    runs().write_parquet(path)
    table = compare_policies.compare(figures.read_runs(path), "policy", "fixed_partition",
                                     ["cpu_utilization"])
    row = {(r["policy"], r["cells"]): r for r in table.to_dicts()}
    assert row["cellular_disco", "cells_4"]["ratio"] == pytest.approx(0.9 / 0.5)
    assert row["cellular_disco", "cells_8"]["ratio"] == pytest.approx(0.6 / 0.2)
    assert row["fixed_partition", "cells_4"]["mean"] == pytest.approx(0.5)  # failed run dropped
    assert row["fixed_partition", "cells_4"]["n"] == 2
    # t(1 dof) = 12.706; sd of (0.4, 0.6) = 0.1414; half-width = t * sd / sqrt(2)
    assert row["fixed_partition", "cells_4"]["ci95"] == pytest.approx(12.706 * 0.1, rel=1e-3)


def test_a_baseline_that_matches_no_run_is_an_error():
    with pytest.raises(SystemExit, match="no run has policy=smp_os"):
        compare_policies.compare(runs(), "policy", "smp_os")
    with pytest.raises(SystemExit, match="COLUMN=VALUE"):
        compare_policies.parse_baseline("fixed_partition")


def test_the_command_line_prints_the_markdown_and_writes_both_files(tmp_path, capsys):
    runs().write_parquet(tmp_path / "runs.parquet")
    compare_policies.main([str(tmp_path), "--baseline", "policy=fixed_partition",
                           "--metrics", "cpu_utilization"])
    out = capsys.readouterr().out
    assert "| policy | cells | metric | n | mean | ci95 | baseline_mean | ratio |" in out
    assert (tmp_path / "compare_policy_fixed_partition.csv").exists()
