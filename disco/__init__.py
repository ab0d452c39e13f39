"""disco: a simulator of Cellular Disco and the experiment framework around it.

``from disco import simulate, SimConfig`` is all a notebook needs. The framework (Hydra, Ray,
polars, seaborn) lives in ``disco.framework`` and is imported only when used.
The simulator core runs compiled when a current build exists (``disco.native``).
"""

from disco import native

native.enable()  # before any core module is imported: it decides where they come from

from disco import policies  # noqa: E402, F401  (registers every system with validation)
from disco.config import ConfigError, SimConfig  # noqa: E402  (after enable)
from disco.result import SimResult  # noqa: E402
from disco.runner import simulate  # noqa: E402

__all__ = ["ConfigError", "SimConfig", "SimResult", "simulate"]
