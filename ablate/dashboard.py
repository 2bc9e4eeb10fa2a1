"""``ablate dashboard`` (``make dashboard``): optuna-dashboard on a search's study storage, the journal file
``ablate search`` writes by default or a database URL. Ctrl-C (or SIGTERM) stops it and every process it started,
whatever moment it is caught in: the dashboard runs in a process group of its own, which is stopped whole.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ablate.cli import run_command, serve
from ablate.config.search_space import SearchConfig, storage_url
from ablate.errors import UserError
from ablate.paths import command


def dashboard(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=command("dashboard"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default=storage_url(SearchConfig()),  # ablate search's own default
                        help="the study storage: a journal file or a database URL (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="8080")
    args = parser.parse_args(argv)
    if "://" not in args.storage and not Path(args.storage).is_file():
        raise UserError(f"{args.storage}: no study storage there; run {command('search')} first, or give "
                        f"--storage a journal file or a database URL.")
    beside = Path(sys.executable).parent / "optuna-dashboard"  # this environment's, else the one on PATH
    program = str(beside) if beside.is_file() else shutil.which("optuna-dashboard")
    if program is None:
        raise UserError("optuna-dashboard is not installed here: pip install optuna-dashboard")
    print(f"optuna-dashboard on {args.storage}: http://{args.host}:{args.port}\n  (Ctrl-C stops it)", flush=True)
    serve([program, "--host", args.host, "--port", str(args.port), args.storage])


def main(argv: list[str]) -> None:
    run_command(lambda: dashboard(argv), "the dashboard stopped.")


if __name__ == "__main__":
    main(sys.argv[1:])
