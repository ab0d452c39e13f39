"""``disco``: one run, or a sweep on Ray, from Hydra-style overrides.

    disco                                        # one run of the default config
    disco machine=origin2000_128 cells=cells_16 workload=mix_shifting
    disco -m policy.periodic_period_ms=50,100 sim.replicates=3   # a sweep, on a local Ray
    disco -m +experiment=cpu_balance             # a named study (conf/experiment/)
    disco -m +experiment=cpu_balance ray.address=auto            # on an existing cluster

Exit codes: 0 all runs ok, 1 some run failed, 2 bad command line or config (nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="disco", description="Simulate Cellular Disco; sweep configs on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Overrides use Hydra syntax: group=option, key=value, +key=value, ~key, "
               "key=a,b,c (with -m). Groups: see conf/.")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="expand sweeps (a,b,c; range(); sweep.params) and run them on Ray")
    p.add_argument("--cfg", action="store_true",
                   help="print the first run's resolved config and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and list the runs without running them")
    p.add_argument("overrides", nargs="*", help="Hydra overrides")
    return p


def format_error(exc: BaseException) -> str:
    """The message and its causes: Hydra wraps OmegaConf's error, which names the full key."""
    parts = [str(exc).strip()]
    cause = exc.__cause__
    while cause is not None and len(parts) < 4:
        text = str(cause).strip()
        if text and text not in parts:
            parts.append(text)
        cause = cause.__cause__
    return "\n".join(parts)


def _config_errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from disco.config import ConfigError
    from disco.framework.plan import PlanError

    return ConfigError, PlanError, HydraException, OmegaConfBaseException


def _metrics_table(rows: list[dict[str, Any]]) -> str:
    names: list[str] = []
    for r in rows:
        names += [k for k, v in r.items() if k not in names and isinstance(v, int | float)
                  and not isinstance(v, bool) and k not in ("replicate", "base_seed")]
    head = ["metric"] + [f"replicate {r.get('replicate')}" for r in rows]
    lines = [[n] + [_fmt(r.get(n)) for r in rows] for n in names]
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``disco``; returns the exit code."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("\ndisco: interrupted; finished runs are kept, run the same command to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `disco --dry-run ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    cmd = ["disco", *(argv if argv is not None else sys.argv[1:])]
    if args.multirun and not (args.cfg or args.dry_run):
        t0 = time.perf_counter()
        from disco.framework import fastpath

        hit = fastpath.lookup(args.overrides)
        if hit is not None:
            n = len(hit["keys"])
            print(f"{hit['study']}: {n} runs: 0 done, {n} skipped (already complete), 0 failed "
                  f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            print(hit["runs_path"])
            return 0
    from disco.framework.plan import make_plan

    try:
        plan = make_plan(args.overrides, multirun=args.multirun)
    except _config_errors() as exc:
        print(f"disco: error: {format_error(exc)}", file=sys.stderr)
        return 2
    if args.cfg:
        import yaml

        print(yaml.safe_dump(plan.runs[0].config, sort_keys=False), end="")
        return 0
    if args.dry_run:
        print(f"{len(plan.runs)} runs in {plan.study_dir}"
              + (f" ({plan.duplicates} duplicate configs dropped)" if plan.duplicates else ""))
        for spec in plan.runs:
            cols = " ".join(f"{k}={v}" for k, v in spec.columns.items())
            print(f"  {spec.key}  replicate={spec.replicate} seed={spec.seed}  {cols}")
        return 0

    from disco.framework.ray_backend import RayStartError
    from disco.framework.sweep import run_sweep

    try:  # without -m: in this process, no Ray (one run does not pay for starting a cluster)
        outcome = run_sweep(plan, argv=cmd, serial=None if args.multirun else True)
    except RayStartError as exc:
        print(f"disco: error: {exc}", file=sys.stderr)
        return 2
    if not args.multirun and plan.runs:
        cols = " ".join(f"{k}={v}" for k, v in plan.runs[0].columns.items())
        print(f"config: {cols}")
        print(_metrics_table(outcome.rows))
        for r in outcome.rows:
            print(f"run {r['key']}: {r['status']} -> "
                  f"{plan.study_dir / 'runs' / r['key']}")
    for f in outcome.failures:
        last = (f.error or "").strip().splitlines()[-1:] or ["?"]
        cols = " ".join(f"{k}={v}" for k, v in f.row.items()
                        if "." in k or k in ("replicate", "seed"))
        print(f"FAILED {f.key} ({cols}): {last[0]}", file=sys.stderr)
    print(f"{outcome.study}: {outcome.total} runs: {outcome.done} done, {outcome.skipped} "
          f"skipped (already complete), {outcome.failed} failed in {outcome.wall_s:.1f} s",
          file=sys.stderr)
    if outcome.runs_path is not None:
        print(outcome.runs_path)
        if args.multirun and not outcome.failed and not plan.sweep.get("force"):
            from disco.framework import fastpath

            fastpath.remember(args.overrides, plan.study, plan.results_dir, outcome.runs_path,
                              [s.key for s in plan.runs])
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
