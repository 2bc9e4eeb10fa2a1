"""What every command-line entry point shares: a problem the user fixes ends with one line and exit code 2, Ctrl-C
with one line and exit code 130 (SIGTERM: 143), and MLflow's own console lines stay quiet (ablate prints its own)."""

import contextlib
import os
import signal
import sys
from typing import Any, Callable, Iterator

from ablate import UserError
from ablate.paths import CONF


@contextlib.contextmanager
def user_errors_end_the_command() -> Iterator[None]:
    """A ``UserError`` ends the command with its one-line message and exit code 2, not a traceback. Hydra prints
    any exception that leaves a task function or a launcher as a traceback, so those use this inside too."""
    try:
        yield
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, Kubernetes and ``timeout`` send), raised where the process is, as Ctrl-C is: the open
    runs end KILLED with the signal named, and the command exits with 143."""


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"terminated ({signal.Signals(signum).name})")


def run_interruptible(command: Callable[[], None], on_interrupt: str) -> None:
    """Run a command line entry point; Ctrl-C ends it with one line and exit code 130, SIGTERM with exit code 143,
    a ``UserError`` with its message and exit code 2: not a traceback."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # ablate prints its own line per run
    signal.signal(signal.SIGTERM, _terminated)
    try:
        with user_errors_end_the_command():
            command()
    except KeyboardInterrupt as err:
        print(f"\n{err if isinstance(err, Terminated) else 'interrupted'}: {on_interrupt}", file=sys.stderr)
        sys.exit(143 if isinstance(err, Terminated) else 130)


def hydra_command(config_name: str, main: Callable[[Any], None], on_interrupt: str) -> None:
    """Run ``main`` on the typed object of ``conf/<config_name>.yaml`` composed with the command line's overrides:
    the whole entry point of a command whose config keeps no Hydra run folder (report, ui)."""
    import hydra
    from omegaconf import DictConfig

    from ablate.config import typed_object
    from ablate.schemas import register_configs

    register_configs()

    @hydra.main(config_path=str(CONF), config_name=config_name, version_base="1.3")
    def command(config: DictConfig) -> None:
        with user_errors_end_the_command():
            main(typed_object(config))

    run_interruptible(command, on_interrupt)
