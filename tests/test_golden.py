"""Golden results: the digest of every metric, timeline and table of a set of runs that takes
each mechanism through its paces is pinned in ``tests/golden.json``.

A structural change (a refactor, a speed-up) must leave every digest as it is. A model change
that moves results re-pins them in one commit that says why::

    python tests/test_golden.py --pin      # rewrite tests/golden.json from this tree

The digests are of the Python values themselves, so the compiled core and the sources must
agree on them too (``tests/test_native.py`` checks that separately).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).with_name("golden.json")

# name -> Hydra overrides. Together: gang on and off, both balancers, memory with borrowing
# and paging, every fault kind with recovery and restarts, lazy kill, evacuation, the
# baselines, one cell, and a bigger machine.
CONFIGS: dict[str, list[str]] = {
    "default": ["sim.duration_s=10"],
    "gang_off": ["policy=gang_off", "sim.duration_s=5"],
    "faults": ["faults=campaign", "sim.duration_s=40"],
    "faults_lazy": ["faults=campaign", "faults.kill_policy=lazy", "sim.duration_s=30"],
    "paging": ["+experiment=paging", "machine.memory_per_node_mb=128", "sim.duration_s=8"],
    "borrowing": ["workload=database_heavy", "machine.memory_per_node_mb=288",
                  "sim.duration_s=10"],
    "evacuate": ["faults=evacuate", "sim.duration_s=20"],
    "one_node": ["faults=one_node", "sim.duration_s=10"],
    "fixed": ["policy=fixed_partition", "sim.duration_s=5"],
    "smp": ["policy=smp_os", "sim.duration_s=5"],
    "one_cell": ["policy=disco_one_cell", "sim.duration_s=5"],
    "shifting": ["workload=mix_shifting", "sim.duration_s=10"],
    "cpus128": ["machine=origin2000_128", "cells=cells_32", "sim.duration_s=2"],
}


def digest(overrides: list[str]) -> str:
    from disco import simulate
    from disco.framework.compose import compose

    r = simulate(compose(overrides))
    metrics = {k: v for k, v in r.metrics.items() if k != "wall_time_s"}
    blob = json.dumps([metrics, r.timeline, r.vms, r.tables], sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def digests() -> dict[str, str]:
    return {name: digest(overrides) for name, overrides in CONFIGS.items()}


def test_golden_digests_are_unchanged():
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN.name} is missing: python tests/test_golden.py --pin")
    pinned = json.loads(GOLDEN.read_text())
    assert set(pinned) == set(CONFIGS), "CONFIGS changed: python tests/test_golden.py --pin"
    got = digests()
    changed = sorted(name for name in CONFIGS if got[name] != pinned[name])
    assert not changed, (f"results changed for {changed}: a structural change must keep them; a "
                         "model change re-pins in one commit that says why")


if __name__ == "__main__":
    if sys.argv[1:] != ["--pin"]:
        sys.exit("usage: python tests/test_golden.py --pin")
    GOLDEN.write_text(json.dumps(digests(), indent=1, sort_keys=True) + "\n")
    print(f"pinned {len(CONFIGS)} digests in {GOLDEN}")
