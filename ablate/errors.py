"""Errors a user can act on, where in their own code a failure started, and the stop a signal asks for. Imports
nothing heavy: every layer, and ``ablate --help``, may import it."""

from __future__ import annotations

import contextlib
import inspect
import signal
import traceback
from pathlib import Path
from typing import Any, Iterator, Optional


class UserError(Exception):
    """A problem the user fixes (a config value, a data file, a store): its message names the problem and the fix.
    Every command ends with that one line and exit code 2; anything else keeps its whole traceback."""


class ConfigValueError(UserError, ValueError):
    """A configuration value outside its allowed range; the message names the key and the range."""


class DataError(UserError, ValueError):
    """A data file that is missing or malformed; the message names the file, the row and the fix."""


def chain(err: Optional[BaseException]) -> Iterator[BaseException]:
    """``err``, then its causes and contexts, each once: where a library's wrapping hides what failed underneath."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


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
_state = {"deferring": 0, "raised": False}  # how deep in a write a stop must not cut in two; whether it was raised


def signals_cleared() -> None:
    """A command starts and ends with no stop received (the entry point calls this: a process may run several)."""
    _received.clear()
    _state.update(deferring=0, raised=False)


def signal_received(signum: int) -> bool:
    """Record a signal; True where it stops the command now: the first, outside a write (inside one, the stop
    waits for the write's end; the later signals only wait for the wind-down)."""
    _received.append(signum)
    stops = len(_received) == 1 and not _state["deferring"]
    _state["raised"] |= stops
    return stops


def first_signal() -> Optional[int]:
    return _received[0] if _received else None


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block a stop waits: a run is started or ended whole (its status never left half written), and a
    stop that came meanwhile is raised as the block ends (once: the wind-down's own writes do not raise it again)."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
    if not _state["deferring"] and _received and not _state["raised"]:
        _state["raised"] = True
        raise Stopped(_received[0])


def raise_if_stopped() -> None:
    """Raise the stop a signal asked for where it has not stopped the work: its raising can be lost where Python
    only reports it (inside a garbage collector's callback). The runner calls this between epochs, in the normal
    course of work, never in a wind-down; where nothing was received it costs a list lookup."""
    if _received:
        _state["raised"] = True
        raise Stopped(_received[0])
