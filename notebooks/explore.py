# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploring disco from Python
#
# One simulation, a small sweep on Ray, its results as one polars table, two policies compared
# with confidence intervals, and a seaborn figure.
#
# This is a [jupytext](https://jupytext.readthedocs.io) notebook: a plain Python file with
# `# %%` cells, so it diffs like code and keeps no outputs. Open it in Jupyter (with jupytext
# installed, `jupyter lab notebooks/explore.py` opens it as a notebook), or run it as a script
# (`python notebooks/explore.py`). `tests/test_notebook.py` executes it in a Jupyter kernel on
# every test run, so it cannot rot.
#
# Results go to `$DISCO_RESULTS` (default `results/`), like any sweep's.

# %%
import os
from pathlib import Path

import numpy as np
import polars as pl

RESULTS = Path(os.environ.get("DISCO_RESULTS", "results"))

# %% [markdown]
# ## 1. One simulation
#
# `compose` turns Hydra overrides into the validated `SimConfig` that `disco <overrides>` would
# run; `simulate` runs it in this process. Here: the paper machine (16 nodes x 2 CPUs, 8 cells)
# with a load that moves from cells 0-3 to cells 4-7, for 10 simulated seconds.

# %%
from disco import simulate
from disco.framework.compose import compose

cfg = compose(["workload=mix_shifting", "sim.duration_s=10"])
result = simulate(cfg)
result.to_polars().select("cpu_utilization", "idle_fraction", "balancer_moves_idle",
                          "balancer_moves_periodic", "vms_completed", "vms_total")

# %% [markdown]
# The per-cell timeline of the same run: how busy each cell was, sample by sample.

# %%
timeline = result.to_polars("timeline")
timeline.group_by("cell").agg(pl.col("utilization").mean()).sort("cell")

# %% [markdown]
# ## 2. A small sweep on a shared Ray
#
# The same overrides `disco -m` takes: Cellular Disco's balancers against none, 4 replicates
# each (seeds spawned from `sim.seed`, the same 4 for both policies). `make_plan` validates every
# run before any starts; `run_sweep` skips runs already complete (run this cell twice: the
# second time nothing runs) and sends the rest to Ray. Inside `ray_backend.shared()` every sweep
# uses the one private local Ray the first of them starts, and it stops when the block ends.

# %%
from disco.framework import ray_backend
from disco.framework.plan import make_plan
from disco.framework.sweep import run_sweep

sweep = ["workload=mix_shifting", "sim.duration_s=10", "sim.replicates=4",
         "policy=cellular_disco,no_balancers", "study=explore", f"results_dir={RESULTS}",
         "ray.num_cpus=2", "sweep.progress=false"]
with ray_backend.shared():
    outcome = run_sweep(make_plan(sweep))
print(f"{outcome.total} runs: {outcome.done} ran, {outcome.skipped} were already complete, "
      f"{outcome.failed} failed")

# %% [markdown]
# ## 3. The results as one table
#
# `disco.results.load` reads every run of the study (every sweep it ever ran, not only the last)
# as a polars LazyFrame: the metrics, the group choices, where each run ran, and the whole config
# flattened under `config.`.

# %%
import disco.results

runs = (disco.results.load("explore", results_dir=RESULTS)
        .filter(pl.col("status") == "ok")
        .collect())
runs.select("policy", "replicate", "seed", "cpu_utilization", "node_ip",
            "config.policy.periodic_balancer").sort("policy", "replicate")

# %% [markdown]
# ## 4. Two policies, with confidence intervals
#
# A mean and its 95 % Student-t interval (`scipy.stats.t`) per policy, and the difference of the
# two paired by replicate: both policies saw the same seeds (the same arrivals), so the paired
# difference is what the policy changed. The same rule as the report's verdicts
# (`analysis/verdicts.py`): the claim holds when the whole interval is on one side of 0.

# %%
from scipy import stats


def t_interval(values, confidence=0.95):
    """Mean and Student-t interval of the mean."""
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * stats.sem(x)
    return x.mean(), x.mean() - half, x.mean() + half


metric = "cpu_utilization"
wide = runs.pivot(on="policy", index="replicate", values=metric).sort("replicate")
for policy in ("cellular_disco", "no_balancers"):
    mean, lo, hi = t_interval(wide[policy])
    print(f"{policy:>15}: {metric} {mean:.3f} [{lo:.3f}, {hi:.3f}] (n = {wide.height})")
mean, lo, hi = t_interval(wide["cellular_disco"] - wide["no_balancers"])
print(f"cellular_disco - no_balancers: {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] (paired by replicate)")
print("the balancers raise utilization" if lo > 0 else
      "no clear difference: add replicates" if hi > 0 else "the balancers lower utilization")

# %% [markdown]
# ## 5. A figure
#
# Every replicate as a point, and each policy's mean with its t interval.

# %%
import matplotlib.pyplot as plt
import seaborn as sns

sns.set_theme(style="whitegrid")
fig, ax = plt.subplots(figsize=(5, 3.5))
order = ["cellular_disco", "no_balancers"]
sns.stripplot(data=runs.to_pandas(), x="policy", y=metric, order=order, color="#607d8b",
              size=6, ax=ax)
for i, policy in enumerate(order):
    mean, lo, hi = t_interval(wide[policy])
    ax.errorbar(i + 0.25, mean, yerr=[[mean - lo], [hi - mean]], fmt="o", color="#c62828",
                capsize=4)
ax.set_title("mix_shifting, 10 s: mean and 95 % t interval")
figure = RESULTS / "explore" / f"{metric}_by_policy.png"
fig.tight_layout()
fig.savefig(figure, dpi=110)
print(figure)

# %% [markdown]
# ## What the monitor did: a trace
#
# A traced run writes a Chrome trace-event file that ui.perfetto.dev (open the file; nothing
# is uploaded) and chrome://tracing show: a track per CPU grouped by cell with a slice per VCPU
# run, a track per VM for its gang state, steals, moves, preemptions, counters per cell, and
# faults with their recovery phases (docs/trace.md). Tracing changes no result. From the
# command line: `disco sim.duration_s=5 trace=true`; a Gantt chart of a window:
# `python analysis/schedule.py <run dir> --from 2 --to 3`.

# %%
from disco.trace import TraceOptions

trace_path = RESULTS / "explore" / "trace.json"
trace_path.parent.mkdir(parents=True, exist_ok=True)
short = compose(["sim.duration_s=2"])
traced = simulate(short, trace=TraceOptions(trace_path, window=(1.0, 2.0)))
plain = simulate(short)
same = {k for k in plain.metrics if k != "wall_time_s"}  # the wall clock is the one difference
assert repr({k: traced.metrics[k] for k in sorted(same)}) == repr(
    {k: plain.metrics[k] for k in sorted(same)})
print(trace_path, f"{trace_path.stat().st_size / 1e6:.2f} MB")

# %% [markdown]
# ## Next
#
# - The command line does the same: `disco -m workload=mix_shifting sim.replicates=4
#   policy=cellular_disco,no_balancers study=explore` (docs/framework.md).
# - Instead of a grid, tune: `disco tune +experiment=tune_borrowing` searches the memory-borrowing
#   knobs for the Pareto front of VM run time against VMs lost per fault. Its study is an Optuna
#   SQLite database, `optuna.load_study(study_name="tune_borrowing",
#   storage="sqlite:///results/tune_borrowing/optuna.db")`, and its runs load like these:
#   `disco.results.load("tune_borrowing")`.
