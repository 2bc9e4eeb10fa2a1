"""ablate: reproducible ablation studies of small PyTorch networks (BatchNorm, dropout, L2, learning rate)."""

import sys
from typing import Callable

__version__ = "0.1.0"


class UserError(Exception):
    """A problem the user fixes (a config value, a data file): its message names the problem and the fix."""


def run_interruptible(command: Callable[[], None], on_interrupt: str) -> None:
    """Run a command line entry point; Ctrl-C ends it with one line and exit code 130, a ``UserError`` with its
    message and exit code 2: not a traceback."""
    try:
        command()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {on_interrupt}", file=sys.stderr)
        sys.exit(130)
