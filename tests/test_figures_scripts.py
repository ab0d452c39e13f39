"""Every figure script, compare_policies and the report on a tiny real results set.

The session fixture ``paper_results`` (framework_helpers/paper_results.py) runs each paper
study serially at a reduced size into a temporary results directory; each script must then
draw a non-empty PNG and SVG and state a finding with computed checks, and the report must show
every figure.
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
import verdicts  # noqa: E402
from framework_helpers.paper_results import REDUCED  # noqa: E402


@pytest.fixture
def results(paper_results) -> Path:
    return paper_results


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
    assert finding.paper and finding.measured
    assert "n/a" not in finding.measured.split(";")[0], finding.measured
    for check in finding.checks:
        assert check.kind in verdicts.KINDS and check.verdict in verdicts.VERDICTS
        assert check.claim and check.measured and check.source.startswith("[")
    assert finding.checks or study == "sensitivity"


def test_figure_scripts_run_from_the_command_line_on_the_results_root(results, tmp_path, capsys):
    module = importlib.import_module("recovery")
    import figures

    finding = figures.main(module.make, "recovery", [str(results), "--out", str(tmp_path)])
    assert (tmp_path / "recovery.png").exists()
    assert finding.verdict in capsys.readouterr().out


def test_compare_policies_writes_markdown_and_csv_with_the_expected_columns(results, tmp_path):
    table, paths = compare_policies.write(results / "vs_partitioning", "policy=fixed_partition",
                                          tmp_path)
    variants = table.columns[:-len(compare_policies.COLUMNS)]
    assert variants[0] == "policy" and {"workload", "faults"} <= set(variants)
    assert table.columns[len(variants):] == list(compare_policies.COLUMNS)
    assert {p.suffix for p in paths} == {".md", ".csv"}
    csv = pl.read_csv(paths[1])
    assert csv.columns == table.columns and csv.height == table.height
    base = table.filter(pl.col("policy") == "fixed_partition")
    assert (base["ratio"].drop_nulls() == 1.0).all()
    assert f"| {' | '.join(variants)} | metric |" in paths[0].read_text()


def test_report_shows_every_figure_and_every_check_in_both_renderings(paper_report):
    from markupsafe import escape

    out, sections = paper_report
    index = out / "index.md"
    assert [s.study for s in sections] == list(report.STUDIES)
    assert not [s.error for s in sections if s.error]
    text, html = index.read_text(), (out / "index.html").read_text()
    for s in sections:
        assert f"figures/{s.study}.png" in text
        assert s.finding.measured in text and str(escape(s.finding.measured)) in html
        for c in s.finding.checks:
            assert c.claim in text and str(escape(c.claim)) in html
    # self-contained: every figure embedded, the tables inlined (collapsed), no file links
    assert html.count("data:image/png;base64,") == len(sections) + 1  # + the schedule
    assert "figures/cpu_balance_schedule.png" in text and "gang scheduling on (left)" in html
    assert 'src="figures/' not in html and "<details>" in html
    assert list((out / "tables").rglob("*.csv"))
    assert "Knob sensitivity" in text and "rpc_us" in text and "rpc_us" in html


def test_a_category_with_no_data_is_marked_none_completed():
    import figures

    fig, (ax,) = figures.subplots(1)
    data = pl.DataFrame({"x": ["a", "a", "b", "c"], "y": [1.0, 2.0, None, float("nan")]})
    assert figures.mark_missing(ax, data, "x", "y", ["a", "b", "c", "d"]) == 3
    assert [t.get_text() for t in ax.texts] == [figures.MISSING] * 3


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


def test_reproduce_plans_studies_two_at_once_as_one_process_would(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduce",
                                                  ROOT / "experiments" / "reproduce.py")
    reproduce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reproduce)
    studies, args = ["overhead", "recovery", "paging"], [f"results_dir={tmp_path}"]
    both, extra = reproduce.plan_studies(studies, "small", args, meanwhile=lambda: 7)
    assert extra == 7
    assert list(both) == studies
    for study in studies:
        alone = reproduce.plan_study(study, "small", args)
        assert both[study][0].runs == alone[0].runs and both[study][2] == alone[2]
    # a bad value: every study says so, nothing runs and nothing is written
    assert reproduce.main([*studies, *args, "sim.duration_s=-1"]) == 2
    assert capsys.readouterr().err.count("sim.duration_s") == len(studies)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_reproduce_starts_ray_early_only_for_the_default_local_ray_its_plans_ask_for():
    import functools
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("reproduce",
                                                  ROOT / "experiments" / "reproduce.py")
    reproduce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reproduce)
    # asked for no Ray, or another one: nothing is started (outside ray_backend.shared()
    # prestart starts nothing either)
    for override in ("sweep.serial=true", "ray.address=auto", "ray.num_cpus=1", "+ray.x=1"):
        assert reproduce.start_ray_early(reproduce.parse([override])) is None
    # started, then a study's plan asks for other ray settings or for no Ray: stopped again
    default = reproduce._default_ray()
    for ray, sweep in (({**default, "num_cpus": 1}, {}), (default, {"serial": True})):
        undone = []
        planned = {"a": (SimpleNamespace(ray=default, sweep={}),),
                   "b": (SimpleNamespace(ray=ray, sweep=sweep),)}
        reproduce.keep_ray_if_planned(functools.partial(undone.append, 1), planned)
        assert undone == [1]
    kept = []
    reproduce.keep_ray_if_planned(functools.partial(kept.append, 1),
                                  {"a": (SimpleNamespace(ray=default, sweep={}),)})
    assert kept == []


def test_per_run_tables_read_together_equal_each_read_alone_and_concatenated(tmp_path):
    import figures

    frames = {"a": pl.DataFrame({"key": ["a", "a"], "x": [1.0, 2.0]}),
              "empty": pl.DataFrame({"key": [None], "x": [None]}).clear(),  # Null dtypes
              "b": pl.DataFrame({"key": ["b"], "x": [3.0]}),
              "reordered": pl.DataFrame({"x": [4.0], "key": ["c"]}),
              "int": pl.DataFrame({"key": ["d"], "x": [5]}),
              "extra": pl.DataFrame({"key": ["e"], "x": [6.0], "y": ["z"]})}
    paths = {}
    for name, df in frames.items():
        df.write_parquet(paths.setdefault(name, tmp_path / f"{name}.parquet"))

    def alone(names):
        read = [t for n in names if (t := pl.read_parquet(paths[n])).height]
        return pl.concat(read, how="diagonal_relaxed") if read else pl.DataFrame()

    for names in (["a", "empty", "b"], ["empty", "a", "b"], ["a", "reordered"],
                  ["reordered", "a"], ["a", "int"], ["a", "extra", "b"], ["empty"], []):
        got = figures.concat_tables([paths[n] for n in names])
        want = alone(names)
        assert got.schema == want.schema and got.equals(want), names


def test_a_report_drawn_by_two_processes_equals_one_drawn_by_one_failing_section_included(
        results, tmp_path):
    import shutil

    studies = ["recovery", "overhead", "containment_overhead"]
    for study in studies:
        shutil.copytree(results / study, tmp_path / "results" / study)
    # overhead's figure fails (no policy column); a large extra column makes its runs table
    # the largest, so that it is the worker's first section (largest first).
    runs = tmp_path / "results" / "overhead" / "runs.parquet"
    table = pl.read_parquet(runs)
    table.drop("policy").with_columns(
        pl.Series("padding", [str(i) * 20_000 for i in range(table.height)])).write_parquet(runs)

    built = {jobs: report.build(tmp_path / "results", "small", tmp_path / f"jobs{jobs}",
                                studies, jobs=jobs) for jobs in (2, 1)}
    (index2, two), (index1, one) = built[2], built[1]
    assert [s.study for s in two] == [s.study for s in one] == studies
    assert [s.study for s in two if s.error] == ["overhead"]
    assert "ColumnNotFoundError" in two[1].error and two[1].error == one[1].error
    for a, b in zip(two, one, strict=True):
        if not a.error:
            assert (a.finding.verdict, a.finding.measured) == (b.finding.verdict,
                                                               b.finding.measured)
            assert [p.name for p in a.finding.paths] == [p.name for p in b.finding.paths]

    def text(index):  # but the date of the build
        return [line for line in index.read_text().splitlines() if "| date |" not in line]

    assert text(index2) == text(index1)
    assert "figure failed" in index2.read_text()
