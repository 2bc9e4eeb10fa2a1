"""What every command shares. The entry points are the only readers of the environment and the command line:

- a problem the user fixes (a config value, a composition error, a data file, a store) ends with one line and exit
  code 2; anything else keeps its whole traceback (exit 1); ``HYDRA_FULL_ERROR=1`` shows Hydra's own errors;
- Ctrl-C, SIGTERM and SIGHUP end the command with one line and 130, 143 or 129, the open runs KILLED with the
  signal's name; a second signal during that wind-down waits for it and exits with the first one's code;
- hints name the commands as the user invoked ablate (``ablate report``, or ``python -m ablate report``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from ablate.errors import (Stopped, UserError, chain, first_signal, raise_if_stopped, signal_received,
                           signals_cleared)
from ablate.tracking.store import store_lines_quiet

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, frame: Any) -> None:
    if signal_received(signum):
        raise Stopped(signum)
    print(f"\n{signal.Signals(signum).name} again: already stopping, the open runs are being ended first",
          file=sys.stderr, flush=True)


FILE_SYSTEM = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
               errno.EDQUOT}  # what the file system refuses: the user fixes it (a folder, a disk, a name)


def one_line(err: BaseException) -> Optional[str]:
    """The one line a user is owed for ``err`` (a ``UserError`` anywhere in its chain, a file system or a store
    refusing a write, an error Hydra or OmegaConf raised composing the config); None for an internal error, which
    keeps its traceback."""
    from ablate.tracking.store import store_failure

    if (user := _chained(err, UserError)) is not None:
        return str(user)
    if (refused := _chained(err, OSError)) is not None and refused.errno in FILE_SYSTEM:
        return (f"{refused.filename or 'a file'}: {refused.strerror}. Check that its folder exists and is writable "
                f"(or run from another folder); runs finished before are kept.")
    if (failed := store_failure(err)) is not None:
        return failed
    if (yaml_error := _yaml_error(err)) is not None:
        return yaml_error
    if type(err).__module__.split(".")[0] in ("hydra", "omegaconf"):
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(err, (HydraException, OmegaConfBaseException)):
            from ablate.config.adapter import composition_error

            return composition_error(err)
    return None


@contextlib.contextmanager
def _entry_point() -> Iterator[bool]:
    """The process set up for a command for the block, and as it was after: the signals handled here, Hydra's errors
    raised to this module (yields whether the user asked to see Hydra's own), MLflow's console lines and Hydra's
    notes on the launcher configs quiet."""
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    saved = {name: os.environ.get(name) for name in ("HYDRA_FULL_ERROR", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")}
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors here, where they become one line
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # ablate prints its own line per run
    signals_cleared()
    handlers = {s: signal.signal(s, _stop) for s in SIGNALS}
    try:
        from ablate.config.adapter import launcher_schema_notes_quiet

        with store_lines_quiet(), launcher_schema_notes_quiet():  # a store's failure becomes one line here
            yield full_error
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        signals_cleared()  # a stop received here ends here: the next library call in this process is not stopped
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_command(command: Callable[[], Any], on_interrupt: str) -> None:
    """Run a command line entry point with ablate's exit codes and one-line errors (see the module's doc)."""
    with _entry_point() as full_error:
        try:
            command()
            raise_if_stopped()  # a signal whose raising was lost (in a garbage collector's callback) still ends it
        except KeyboardInterrupt as err:
            _stopped(err, on_interrupt)
        except Exception as err:
            if (stop := _chained(err, KeyboardInterrupt)) is not None:  # a stop that a library's finally turned
                _stopped(stop, on_interrupt)                            # into another error is still the stop
            message = one_line(err)
            if message is None or (full_error and not isinstance(err, UserError)):
                raise
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(2)


def _stopped(err: BaseException, on_interrupt: str) -> None:
    signum = first_signal() or signal.SIGINT
    print(f"\n{err or 'interrupted'}: {on_interrupt}", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def _yaml_error(err: BaseException) -> Optional[str]:
    """A config file that is not valid YAML (a claims file of the user's, say): its file, line and column."""
    if "yaml" not in sys.modules:
        return None
    from yaml import MarkedYAMLError

    found = _chained(err, MarkedYAMLError)
    if found is None or found.problem_mark is None:
        return None
    mark = found.problem_mark
    return (f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({found.context or ''}"
            f"{': ' if found.context else ''}{found.problem}). Fix the file there.")


def _chained(err: BaseException, kind: type) -> Optional[BaseException]:
    """The first exception of type ``kind`` in ``err``'s chain of causes and contexts, or None."""
    return next((e for e in chain(err) if isinstance(e, kind)), None)


@contextlib.contextmanager
def user_errors_end_the_command() -> Iterator[None]:
    """Inside a Hydra callback (which Hydra lets only warn of an exception) or a job (whose error Hydra reports in
    lines of its own): a ``UserError`` ends the command with its one line and exit code 2."""
    try:
        yield
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def wants_help(argv: Sequence[str]) -> bool:
    return bool({"-h", "--help"} & set(argv))


def settings_help(schema: type, prefix: str = "") -> list[str]:
    """``key=default`` for every setting of a config dataclass, nested ones dotted: a command's help lists them."""
    import typing

    hints, lines = typing.get_type_hints(schema), []
    for f in fields(schema):
        kind = hints[f.name]
        if isinstance(kind, type) and is_dataclass(kind):
            lines += settings_help(kind, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not MISSING else f.default_factory() if f.default_factory is not MISSING \
            else "???"
        lines.append(f"  {prefix}{f.name}={getattr(default, 'value', default)}")
    return lines


def compose_command(config_name: str, argv: Sequence[str], main: Callable[[Any], None]) -> None:
    """``main`` on the typed object of ``conf/<config_name>.yaml`` composed with the command line's overrides: a
    command that keeps no Hydra run folder (report, ui, claims)."""
    from ablate.config.adapter import typed_object
    from ablate.execution.compose import compose, composing

    with composing():
        main(typed_object(compose(config_name, argv)))


def serve(args: list[str], env: Optional[dict[str, str]] = None) -> None:
    """A server (MLflow's UI, its tracking server) as a child in a process group of its own, until it exits or this
    command is stopped (Ctrl-C, SIGTERM, SIGHUP); then the whole group is stopped, its workers with it, so that
    nothing of it keeps serving and the port is free.

    MLflow's job runners (eight huey processes for its GenAI jobs: scorers, trace roll-ups) stay off unless the
    environment turns them on: ablate records no such jobs, and they doubled a server start's CPU (22.6 s, 11.1 s
    without them, on a 2-core host)."""
    import subprocess

    env = dict(os.environ if env is None else env)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    process = subprocess.Popen(args, env=env, start_new_session=True)
    try:
        code = process.wait()
    finally:
        stop_group(process)
    if code:
        raise SystemExit(code)


def stop_group(process: Any, grace_s: float = 10.0) -> None:
    """SIGTERM to a process group started with ``start_new_session``, SIGKILL to what is left after ``grace_s``."""
    import subprocess
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:  # nothing of the group is left
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(process.pid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)
        if not _group_alive(process.pid):
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
