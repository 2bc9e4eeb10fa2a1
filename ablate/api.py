"""ablate from Python (a notebook, a script): the commands' work with the same configs, MLflow records and resume.

    import ablate
    result = ablate.run("model.bn=post", "trainer.epochs=3")          # one variant, as `ablate model.bn=post` does
    sweep_id = ablate.sweep(["model.bn=pre,post,none", "seed=range(3)"])  # a grid, as `ablate -m ...` does
    frame = ablate.runs(sweep_id)                                       # its runs: one row per variant
    table = ablate.judge("judge.seeds=5", "~judge.contexts.digits")     # the claims' verdicts, as text

Overrides are the command line's; the working directory's ``conf/`` and modules join ablate's as they do there.
The same grid as a command line's sweep is the same sweep: each resumes the other. Each call prints what the
console would (a run's epochs, a sweep's plan, its progress as a bar; ``quiet=True``: nothing) and leaves the
process as it found it: torch's random state, its TF32 flags, logging, warnings, Hydra's global state.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from typing import Any, Iterator, Optional, Sequence

import pandas as pd


@contextlib.contextmanager
def _console(quiet: bool) -> Iterator[None]:
    """ablate's own lines printed as the console shows them, for the call only (logging as it was afterwards);
    MLflow's store lines (creating its tables, a failure logged whole before it is raised) and Hydra's notes on the
    launcher configs quiet either way."""
    from ablate.config.adapter import launcher_schema_notes_quiet
    from ablate.tracking.store import store_lines_quiet

    with warnings.catch_warnings():  # MLflow imports tqdm.auto, which warns in a notebook without ipywidgets; ablate
        warnings.simplefilter("ignore")  # draws the console's bar there instead (sweeps.bar_class)
        import tqdm.autonotebook  # noqa: F401
    with store_lines_quiet(), launcher_schema_notes_quiet(), contextlib.ExitStack() if quiet else _ablate_lines():
        yield


@contextlib.contextmanager
def _ablate_lines() -> Iterator[None]:
    logger = logging.getLogger("ablate")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a notebook's own handlers would print each line twice
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def run(*overrides: str, quiet: bool = False):
    """Train and record one variant; returns its ``RunResult`` (run id, outcome, metrics). A FINISHED run of the
    same config, code and data is reused, as on the command line."""
    from ablate.execution.compose import compose_run, composing
    from ablate.execution.runner import train_and_log

    with _console(quiet):
        with composing():
            cfg = compose_run(*overrides)
        return train_and_log(cfg)


def sweep(overrides: Sequence[str], quiet: bool = False, **population: Any) -> str:
    """Train and record a grid as populations under one MLflow parent run; returns the sweep's id. Finished
    variants are reused. ``population``: the population launcher's settings (``max_size``, ``memory_fraction``,
    ``vectorise``; ``config.PopulationSettings``)."""
    from ablate.config.launch import LauncherSettings
    from ablate.execution.compose import ComposeCache, compose, composing
    from ablate.execution.sweeps import run_sweep, sweep_jobs

    settings = LauncherSettings(**population)
    with _console(quiet):
        with composing() as loader:
            jobs, definition, factors = sweep_jobs(
                overrides, lambda fixed: compose("config", fixed, return_hydra_config=True), loader)
            cache = ComposeCache(lambda groups: compose("config", groups), loader)
            cfgs = [cache.run_config(job) for job in jobs]
        the_sweep, _, _ = run_sweep(cfgs, definition, factors, settings, quiet)
    return the_sweep.sweep_id


def runs(sweep_id: Optional[str] = None, *overrides: str) -> pd.DataFrame:
    """A sweep's runs (the latest sweep's without an id) as one row per variant: its params (dotted names, typed as
    the config types them), final metrics and the train-minus-validation gap. ``overrides`` choose the store
    (``tracking.uri=...``)."""
    from ablate.analysis.tables import load_runs
    from ablate.errors import UserError
    from ablate.execution.compose import compose_run, composing
    from ablate.tracking.tracker import Tracker

    with composing():
        tracker = Tracker(compose_run(*overrides).tracking)
    sweep_id = sweep_id or tracker.latest_sweep_id()
    if sweep_id is None:
        raise UserError(f"no sweep in {tracker.uri} yet: run one, e.g. ablate.sweep(['model.bn=pre,post,none'])")
    return load_runs(tracker, sweep_id)


def judge(*overrides: str, quiet: bool = False) -> str:
    """Judge the claims (``ablate claims``'s overrides); returns the verdict tables as markdown (also printed unless
    quiet, written to reports/claims.md and logged to MLflow)."""
    from ablate.claims import judge_command

    with _console(quiet):
        return judge_command(list(overrides), quiet)
