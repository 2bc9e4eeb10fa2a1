"""ablate: reproducible ablation studies of PyTorch networks (BatchNorm, dropout, L2, learning rate, ...).

The public surface, for notebooks and scripts: ``run``, ``sweep``, ``runs``, ``judge`` (``ablate.api``), the
building blocks in ``ablate.nn``, and ``UserError``. Everything else is internal and may change.
"""

__version__ = "0.1.0"
__all__ = ["UserError", "judge", "run", "runs", "sweep", "__version__"]


class UserError(Exception):
    """A problem the user fixes (a config value, a data file): its message names the problem and the fix."""


from ablate.api import judge, run, runs, sweep  # noqa: E402 - after UserError, which api's callees import
