"""Build ``results/report/``: every paper figure, its checks, the knob sensitivity, provenance.

    python analysis/report.py [RESULTS_DIR] [--size small|full] [--out DIR]

For each study of ``STUDIES`` whose ``RESULTS_DIR/<study>[_full]/runs.parquet`` exists, runs its
figure script (``analysis/<study>.py``), which returns what the paper reported, what we measured
and the falsifiable checks of ``verdicts.py`` (each with its kind: measured, calibrated or
analytic), and its ``compare_policies`` tables. One Jinja2 template (``report.j2``) renders
``index.md`` (figures linked from ``figures/``) and a self-contained ``index.html`` (figures
embedded as base64 PNG, tables inlined in collapsed sections) from the same data, headed by the
provenance of the runs.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import re
import sys
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare_policies  # noqa: E402
import figures as F  # noqa: E402
import schedule  # noqa: E402
import verdicts as V  # noqa: E402
from studies import STUDIES  # noqa: E402

INLINE_METRICS = ["cpu_utilization", "vm_runtime_mean_s", "vms_completed", "vms_lost",
                  "memory_borrowed_mb", "recovery_time_ms_max"]
TEMPLATE = "report.j2"
RULES = ("A comparison (\"A below B\") agrees when the 95 % t interval of the paired "
         "difference lies wholly on the claimed side of 0; a bound (\"X within Y\") agrees "
         "when the mean is within it, the interval shown beside it. A calibrated check is one "
         "the defaults were set to reproduce: it reads \"calibrated\" when it holds, which is "
         "no evidence. An analytic check tests a formula the model applies. A measured check is "
         "an outcome of the model. Every verdict is computed from the runs.")


@dataclass(slots=True)
class Section:
    study: str
    finding: F.Finding | None = None
    tables: list[tuple[str, list[Path], pl.DataFrame]] = field(default_factory=list)
    error: str | None = None
    n_min: int = 0
    n_max: int = 0
    # cpu_balance: a window of the schedule, gang on vs off (analysis/schedule.py): the PNG,
    # or None with the caption saying why not.
    schedule: tuple[Path | None, str] | None = None


def study_name(study: str, size: str) -> str:
    return study if size == "small" else f"{study}_{size}"


def build_section(results: Path, study: str, size: str, out: Path) -> Section | None:
    sdir = results / study_name(study, size)
    if not (sdir / F.RUNS).exists():
        return None
    sec = Section(study)
    try:
        module = importlib.import_module(study)
        sec.finding = module.make(sdir, out / "figures")
        sec.n_min, sec.n_max = replicates(F.read_runs(sdir))
        if study == "cpu_balance":
            sec.schedule = schedule.cpu_balance_pair(sdir, out / "figures")
        for baseline in STUDIES[study]:
            table, paths = compare_policies.write(sdir, baseline, out / "tables" / study)
            sec.tables.append((baseline, paths, table.filter(
                table["metric"].is_in(INLINE_METRICS))))
    except Exception:  # noqa: BLE001 - one broken figure must not hide the others
        sec.error = traceback.format_exc()
    return sec


def replicates(runs: pl.DataFrame) -> tuple[int, int]:
    """Fewest and most runs behind one mean: per configuration, or per knob and value in the
    sensitivity study's labelled runs."""
    if "knob_id" in runs.columns and runs.height:
        n = runs.group_by("knob_id", "side").len()["len"]
        return int(n.min()), int(n.max())
    return F.replicates(runs)


# ------------------------------------------------------------------------------ provenance


def run_provenance(results: Path, sections: list[Section], size: str) -> dict[str, Any]:
    """What made the runs: distinct code versions, cores and commits over every run read."""
    import json

    codes: dict[str, int] = {}
    cores: dict[str, int] = {}
    commits: dict[str, int] = {}
    for s in sections:
        sdir = results / study_name(s.study, size)
        runs = F.read_runs(sdir) if (sdir / F.RUNS).exists() else pl.DataFrame()
        for key in (runs["key"].unique().to_list() if "key" in runs.columns else []):
            path = F.run_path(sdir, key) / "provenance.json"
            try:
                p = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            core = str(p.get("core") or "unknown").split(" (")[0]
            commit = f"{str(p.get('git_commit'))[:10]}{' (dirty)' if p.get('git_dirty') else ''}"
            for d, k in ((codes, str(p.get("code_version"))), (cores, core), (commits, commit)):
                d[k] = d.get(k, 0) + 1
    return {"code_versions": codes, "cores": cores, "commits": commits}


def provenance(results: Path, sections: list[Section], size: str) -> dict[str, Any]:
    from disco import native
    from disco.framework.provenance import code_version, git_state

    root = HERE.parent
    git = git_state(root)
    runs = run_provenance(results, sections, size)
    now_code = code_version(root / "disco")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git["git_commit"] or "unknown",
        "dirty": git["git_dirty"],
        "code_version": now_code,
        "core": native.describe().split(" (")[0],
        "size": size,
        "runs": runs,
        "stale": sorted(c for c in runs["code_versions"] if c != now_code),
        "replicates": [(s.study, s.n_min, s.n_max) for s in sections if not s.error],
    }


# ---------------------------------------------------------------------------------- render


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return F.fmt(0.0 if abs(v) < 1e-12 else v, ".4g")
    return "" if v is None else str(v)


def frame(df: pl.DataFrame) -> dict[str, Any]:
    """A table for the template: column names and rows of strings."""
    return {"columns": list(df.columns),
            "rows": [[_cell(v) for v in row] for row in df.iter_rows()]}


def png_base64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def context(sections: list[Section], size: str, out: Path, prov: dict[str, Any]
            ) -> dict[str, Any]:
    """Everything both renderings show, once."""
    secs = []
    for s in sections:
        f = s.finding
        png = next((p for p in f.paths if p.suffix == ".png"), None) if f else None
        gantt, gantt_caption = s.schedule if s.schedule else (None, "")
        checks = [{"claim": c.claim, "kind": c.kind, "source": c.source,
                   "measured": c.measured, "verdict": c.verdict,
                   "few": c.n is not None and 0 < c.n < 3, "n": c.n} for c in
                  (f.checks if f else [])]
        secs.append({
            "study": s.study, "title": f.title if f else s.study, "error": s.error,
            "paper": f.paper if f else "", "measured": f.measured if f else "",
            "verdict": f.verdict if f else "failed", "checks": checks,
            "counts": [(v, sum(c["verdict"] == v for c in checks)) for v in V.VERDICTS
                       if any(c["verdict"] == v for c in checks)],
            "notes": f.notes if f else [],
            "png": str(png.relative_to(out)) if png else None,
            "svg": str(png.with_suffix(".svg").relative_to(out)) if png else None,
            "png_b64": png_base64(png) if png else None,
            "schedule_caption": gantt_caption,
            "schedule_png": str(gantt.relative_to(out)) if gantt else None,
            "schedule_b64": png_base64(gantt) if gantt else None,
            "inline": [(caption, frame(t)) for caption, t in (f.tables if f else [])],
            "tables": [{"baseline": b, "links": [(p.suffix[1:], str(p.relative_to(out)))
                                                 for p in paths], "table": frame(t)}
                       for b, paths, t in s.tables],
            "n_min": s.n_min, "n_max": s.n_max, "few": 0 < s.n_min < 3,
        })
    return {"size": size, "sections": secs, "prov": prov, "ci_method": V.CI_METHOD,
            "rules": RULES}


def render(ctx: dict[str, Any], fmt: str) -> str:
    """The one template, as Markdown (``fmt="md"``) or self-contained HTML (``"html"``)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE)),
                             autoescape=fmt == "html", trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["cellmd"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    text = env.get_template(TEMPLATE).render(fmt=fmt, html=fmt == "html", **ctx)
    return re.sub(r"\n{3,}", "\n\n", text)


def build(results: Path, size: str = "small", out: Path | None = None,
          studies: list[str] | None = None) -> tuple[Path, list[Section]]:
    results = Path(results)
    out = Path(out) if out else results / "report"
    out.mkdir(parents=True, exist_ok=True)
    sections = [s for s in (build_section(results, st, size, out) for st in (studies or STUDIES))
                if s is not None]
    ctx = context(sections, size, out, provenance(results, sections, size))
    (out / "index.md").write_text(render(ctx, "md"))
    (out / "index.html").write_text(render(ctx, "html"))
    return out / "index.md", sections


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results_dir", type=Path, nargs="?", default=Path("results"))
    p.add_argument("--size", choices=("small", "full"), default="small")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    index, sections = build(a.results_dir, a.size, a.out)
    for s in sections:
        print(f"{s.study}: {'FAILED' if s.error else s.finding.verdict}"
              + (f" - {s.finding.measured}" if s.finding else ""))
    print(index)
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
