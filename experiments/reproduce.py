"""``make run``: a small real study on a local Ray, then its figure.

Runs ``disco -m +experiment=smoke_balance`` (2 balancer settings x 3 replicates of 10 simulated
seconds on the shifting mix; conf/experiment/smoke_balance.yaml), then plots CPU utilization by
policy with analysis/plot_metric.py. Extra arguments are passed to disco as overrides, e.g.
``python experiments/reproduce.py results_dir=/tmp/r``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "analysis"))


def main(argv: list[str]) -> int:
    from plot_metric import plot

    from disco.cli import main as disco
    from disco.framework.plan import make_plan

    overrides = ["+experiment=smoke_balance", *argv]
    rc = disco(["-m", *overrides])
    if rc == 2:
        return rc
    runs = make_plan(overrides).study_dir / "runs.parquet"
    print(f"runs: {runs}")
    print(f"figure: {plot(runs, 'cpu_utilization', by='policy')}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
