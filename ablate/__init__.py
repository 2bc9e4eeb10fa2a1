"""ablate: reproducible ablation studies of PyTorch networks (BatchNorm, dropout, L2, learning rate, ...)."""

__version__ = "0.1.0"


class UserError(Exception):
    """A problem the user fixes (a config value, a data file): its message names the problem and the fix."""
