"""Errors a user can act on, where in their own code a failure started, and the stop a signal asks for. Imports
nothing heavy: every layer, and ``ablate --help``, may import it."""

from __future__ import annotations

import inspect
import signal
import traceback
from pathlib import Path
from typing import Any, Optional


class UserError(Exception):
    """A problem the user fixes (a config value, a data file, a store): its message names the problem and the fix.
    Every command ends with that one line and exit code 2; anything else keeps its whole traceback."""


class ConfigValueError(UserError, ValueError):
    """A configuration value outside its allowed range; the message names the key and the range."""


class DataError(UserError, ValueError):
    """A data file that is missing or malformed; the message names the file, the row and the fix."""


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """The config check every schema uses: ``key=value`` fails with what is allowed instead."""
    if not ok:
        raise ConfigValueError(f"{key}={value!r} is not allowed: {key} must be {allowed}.")


def user_frame(err: BaseException, code: object) -> str:
    """The deepest frame of ``err``'s traceback in the file that defines ``code`` (the user's model class or data
    function) as ``file:line: the line's text``; empty where no frame lies there."""
    try:
        source = inspect.getsourcefile(code)
    except TypeError:  # defined in C, or nowhere
        return ""
    if not source:
        return ""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve() == Path(source).resolve()]
    if not frames:
        return ""
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}: {(last.line or '').strip()}"


class Stopped(KeyboardInterrupt):
    """A signal that stops a command, raised where the process is, as Ctrl-C is: SIGINT (Ctrl-C), SIGTERM (what SLURM,
    Kubernetes and ``timeout`` send) or SIGHUP (a closed terminal, a dropped ssh). The open runs end KILLED with
    its name, and the command exits with 128 + its number (130, 143, 129)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__("interrupted (Ctrl-C)" if signum == signal.SIGINT else
                         f"terminated ({signal.Signals(signum).name})")


_received: list[int] = []  # the signals the entry point's handler was given, in order


def signal_received(signum: int) -> bool:
    """Record a signal; True for the first, which stops the command (the later ones only wait for its wind-down)."""
    _received.append(signum)
    return len(_received) == 1


def first_signal() -> Optional[int]:
    return _received[0] if _received else None


def raise_if_stopped() -> None:
    """Raise the stop a signal asked for if it has not stopped the work yet: its first raising can be lost where
    Python only reports it (inside a garbage collector's callback). The runner calls this between epochs, so no
    signal is lost; where nothing was received it costs a list lookup."""
    if _received:
        raise Stopped(_received[0])
