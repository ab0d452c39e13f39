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
import multiprocessing as mp
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
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


# Processes drawing the sections: this one and one worker (never more than the cores).
JOBS = 2


def with_runs(results: Path, studies: Sequence[str], size: str) -> list[str]:
    """The studies of ``studies`` (in that order) whose runs table exists: the sections."""
    return [st for st in studies if (results / study_name(st, size) / F.RUNS).exists()]


def build_sections(results: Path, studies: Sequence[str], size: str, out: Path,
                   jobs: int | None = None, meanwhile: Callable[[], Any] | None = None
                   ) -> tuple[list[Section], Any]:
    """``build_section`` of every study of ``with_runs(studies)``, in that order, and what
    ``meanwhile`` returns (called here first, while the workers start).

    The sections are independent (each reads its own study and writes its own figures and
    tables), so up to ``jobs`` processes draw them: this one and ``jobs - 1`` workers started
    with ``spawn``, a fresh interpreter (a fork of this one, whose polars thread pool has run,
    can deadlock; and, as for any spawned process, a script calling this must guard its top
    level with ``if __name__ == "__main__"``). Worker ``k`` starts with the ``k``-th section
    largest first (by the size of the runs table, a proxy for the work), then every process
    takes the next section not taken (a shared counter) until none is left, so that they
    finish together. A section's error is caught where it is drawn (``build_section``): a
    failing figure gives ``Section.error`` in whichever process drew it. A section that a
    worker did not deliver (it died, or its result could not be sent back) is drawn here."""
    todo = with_runs(results, studies, size)
    workers = min(JOBS if jobs is None else jobs, available_cores(), len(todo)) - 1
    if workers < 1:
        extra = meanwhile() if meanwhile else None
        sections = [build_section(results, st, size, out) for st in todo]
        return [s for s in sections if s is not None], extra
    order = sorted(todo, key=lambda st: (results / study_name(st, size) / F.RUNS).stat().st_size,
                   reverse=True)
    ctx = mp.get_context("spawn")
    taken = ctx.Value("i", workers)  # order[:workers] are the workers' first sections
    built: dict[str, Section | None] = {}
    readers = []
    done = False
    try:
        for k in range(workers):
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_draw_sections, args=(k, taken, order, results, size,
                                                            out, writer), daemon=True)
            try:
                proc.start()
            except OSError:  # no worker: its first section is drawn here, at the end
                reader.close()
                continue
            finally:
                writer.close()  # the worker's end: EOF here once the worker is done
            readers.append((proc, reader))
        extra = meanwhile() if meanwhile else None
        while (i := _take(taken, len(order))) is not None:
            built[order[i]] = build_section(results, order[i], size, out)
        for _, reader in readers:
            while True:
                try:
                    study, sent, section = reader.recv()
                except (EOFError, OSError):
                    break
                if sent:
                    built[study] = section
            reader.close()
        done = True
    finally:
        for proc, _ in readers:
            if not done and proc.is_alive():
                proc.terminate()
                proc.join()
        # else the worker has sent everything and is exiting: not waited for (a daemon,
        # which multiprocessing reaps)
    sections = [built[st] if st in built else build_section(results, st, size, out)
                for st in todo]
    return [s for s in sections if s is not None], extra


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _take(taken, n: int) -> int | None:
    """The next section not yet taken by any process, or None."""
    with taken.get_lock():
        i = taken.value
        if i >= n:
            return None
        taken.value = i + 1
        return i


def _draw_sections(first: int, taken, order: list[str], results: Path, size: str, out: Path,
                   conn) -> None:
    """A worker of ``build_sections``: section ``order[first]``, then the next not taken, until
    none is left; each sent back as it is done: ``(study, True, Section or None)``, or
    ``(study, False, None)`` when it cannot be (not picklable: the parent draws it again)."""
    i: int | None = first
    while i is not None:
        section = build_section(results, order[i], size, out)
        try:
            conn.send((order[i], True, section))
        except Exception:  # noqa: BLE001 - whatever pickling raises
            conn.send((order[i], False, None))
        i = _take(taken, len(order))
    conn.close()


def replicates(runs: pl.DataFrame) -> tuple[int, int]:
    """Fewest and most runs behind one mean: per configuration, or per knob and value in the
    sensitivity study's labelled runs."""
    if "knob_id" in runs.columns and runs.height:
        n = runs.group_by("knob_id", "side").len()["len"]
        return int(n.min()), int(n.max())
    return F.replicates(runs)


# ------------------------------------------------------------------------------ provenance


def run_provenance(results: Path, studies: Sequence[str], size: str) -> dict[str, Any]:
    """What made the runs: distinct code versions, cores and commits over every run read."""
    import json

    codes: dict[str, int] = {}
    cores: dict[str, int] = {}
    commits: dict[str, int] = {}
    for study in studies:
        sdir = results / study_name(study, size)
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


def provenance(results: Path, studies: Sequence[str], size: str) -> dict[str, Any]:
    """The report's provenance but ``replicates`` (which needs the sections: ``build``)."""
    from disco import native
    from disco.framework.provenance import code_version, git_state

    root = HERE.parent
    git = git_state(root)
    runs = run_provenance(results, studies, size)
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
          studies: list[str] | None = None, jobs: int | None = None
          ) -> tuple[Path, list[Section]]:
    """Write ``out`` (default ``results/report``): every study's section (``build_sections``,
    drawn by up to ``jobs`` processes), then ``index.md`` and ``index.html``."""
    results = Path(results)
    out = Path(out) if out else results / "report"
    out.mkdir(parents=True, exist_ok=True)
    studies = with_runs(results, studies or list(STUDIES), size)
    sections, prov = build_sections(results, studies, size, out, jobs,
                                    meanwhile=lambda: provenance(results, studies, size))
    prov["replicates"] = [(s.study, s.n_min, s.n_max) for s in sections if not s.error]
    ctx = context(sections, size, out, prov)
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
