"""disco: a simulator of Cellular Disco and the experiment framework around it.

``from disco import simulate, SimConfig`` is all a notebook needs. The framework (Hydra, Ray,
polars, seaborn) lives in ``disco.framework`` and is imported only when used.
"""

from disco.config import ConfigError, SimConfig
from disco.result import SimResult
from disco.runner import simulate

__all__ = ["ConfigError", "SimConfig", "SimResult", "simulate"]
