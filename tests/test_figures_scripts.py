"""Every figure script, compare_policies and the report on a tiny real results set.

One module-scoped fixture runs each paper study serially at a reduced size (fewer values, fewer
replicates, shorter runs) into a temporary results directory; each script must then draw a
non-empty PNG and SVG and state a finding, and the report must show every figure.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "analysis"))

import compare_policies  # noqa: E402
import report  # noqa: E402

FAST = ["sweep.serial=true", "sweep.progress=false"]
# Each study cut down to a few seconds of wall time in all, keeping the values its figure needs.
REDUCED = {
    "overhead": ["sim.duration_s=8", "sim.replicates=2"],
    "containment_overhead": ["workload=raytrace,pmake", "sim.duration_s=20", "sim.replicates=2"],
    "cpu_balance": ["policy.periodic_period_ms=100", "sim.duration_s=30",
                    "sim.replicates=2"],
    "memory_borrowing": ["policy.borrow_trigger_mb=16", "sim.replicates=2"],
    "paging": ["machine.memory_per_node_mb=256,512",
               "sim.duration_s=20"],
    "recovery": ["machine.memory_per_node_mb=256,512", "machine.nodes=16,32"],
    "containment": ["sim.duration_s=30", "sim.replicates=3"],
    "vs_partitioning": ["sim.duration_s=30", "sim.replicates=2"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    from disco.framework.plan import make_plan
    from disco.framework.sweep import run_sweep

    root = tmp_path_factory.mktemp("results")
    for study, extra in REDUCED.items():
        plan = make_plan([f"+experiment={study}", *FAST, *extra, f"results_dir={root}"])
        outcome = run_sweep(plan)
        assert outcome.failed == 0, study
    return root


def test_every_paper_study_has_a_reduced_fixture_and_a_script():
    assert set(REDUCED) == set(report.STUDIES)
    for study in report.STUDIES:
        assert (ROOT / "analysis" / f"{study}.py").exists()
        assert (ROOT / "conf" / "experiment" / f"{study}.yaml").exists()
        assert (ROOT / "conf" / "experiment" / f"{study}_full.yaml").exists()


@pytest.mark.parametrize("study", list(REDUCED))
def test_each_figure_script_draws_a_png_and_svg_and_states_a_finding(results, tmp_path, study):
    module = importlib.import_module(study)
    finding = module.make(results / study, tmp_path)
    png, svg = tmp_path / f"{study}.png", tmp_path / f"{study}.svg"
    assert png.stat().st_size > 5000 and svg.stat().st_size > 5000
    assert set(finding.paths) == {png, svg}
    assert finding.paper and finding.measured and finding.criterion
    assert "n/a" not in finding.measured.split(";")[0], finding.measured


def test_figure_scripts_run_from_the_command_line_on_the_results_root(results, tmp_path, capsys):
    module = importlib.import_module("recovery")
    import figures

    finding = figures.main(module.make, "recovery", [str(results), "--out", str(tmp_path)])
    assert (tmp_path / "recovery.png").exists()
    assert finding.verdict in capsys.readouterr().out


def test_compare_policies_writes_markdown_and_csv_with_the_expected_columns(results, tmp_path):
    table, paths = compare_policies.write(results / "vs_partitioning", "policy=fixed_partition",
                                          tmp_path)
    assert table.columns == ["policy", "faults", "cells", *compare_policies.COLUMNS]
    assert {p.suffix for p in paths} == {".md", ".csv"}
    csv = pl.read_csv(paths[1])
    assert csv.columns == table.columns and csv.height == table.height
    base = table.filter(pl.col("policy") == "fixed_partition")
    assert (base["ratio"].drop_nulls() == 1.0).all()
    assert "| policy | faults | cells | metric |" in paths[0].read_text()


def test_report_shows_every_figure_with_a_line_per_figure(results, tmp_path):
    index, sections = report.build(results, "small", tmp_path)
    assert [s.study for s in sections] == list(report.STUDIES)
    assert not [s.error for s in sections if s.error]
    text = index.read_text()
    for s in sections:
        assert f"figures/{s.study}.png" in text
        assert s.finding.measured in text
    assert (tmp_path / "index.html").read_text().count("<img") == len(sections)
    assert list((tmp_path / "tables").rglob("*.csv"))


def test_reproduce_takes_studies_size_and_overrides_in_any_order():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduce",
                                                  ROOT / "experiments" / "reproduce.py")
    reproduce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reproduce)
    a = reproduce.parse(["recovery", "--size", "full", "results_dir=/x", "overhead"])
    assert (a.studies, a.size, a.overrides) == (["recovery", "overhead"], "full",
                                                ["results_dir=/x"])
    assert reproduce.parse([]).studies == [*report.STUDIES, "smoke_balance"]
    with pytest.raises(SystemExit):
        reproduce.parse(["no_such_study"])
