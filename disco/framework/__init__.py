"""The experiment framework: Hydra configs in, sweeps on Ray, Parquet results out.

Nothing here is imported by the simulator, and nothing heavy (Hydra, Ray, polars) is imported by
``import disco.framework``: each module imports its library inside the functions that use it,
so ``import disco`` stays fast and Ray workers only load what a run needs.

- ``schema``: the structured config (SimConfig's fields + framework keys) for Hydra's ConfigStore
- ``compose``: ``conf/`` + overrides -> DictConfig / SimConfig
- ``plan``: a command line -> the list of runs (one per config and replicate), validated
- ``execute``: run one batch of runs and write each run's files (in-process or on a Ray worker)
- ``sweep``: the driver: skip complete runs, fan out, collect, gather ``runs.parquet``
- ``results``, ``provenance``, ``progress``: atomic Parquet files, where a run came from, the line
"""
