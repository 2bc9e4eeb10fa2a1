"""ablate from Python (a notebook, a script): the commands' work with the same configs, MLflow records and resume.

    import ablate
    result = ablate.run("model.bn=post", "trainer.epochs=3")          # one variant, as python -m ablate does
    sweep_id = ablate.sweep(["model.bn=pre,post,none", "seed=range(3)"])  # a grid, as python -m ablate -m does
    frame = ablate.runs(sweep_id)                                       # its runs: one row per variant
    table = ablate.judge("judge.seeds=5", "~judge.contexts.digits")     # the claims' verdicts, as text

Overrides are the command line's; the working directory's ``conf/`` and modules join ablate's as they do there.
The same grid as a command line's sweep is the same sweep: each resumes the other.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Iterator, Optional, Sequence

import pandas as pd


@contextlib.contextmanager
def _composing() -> Iterator[None]:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ablate.paths import CONF
    from ablate.schemas import register_configs

    register_configs()
    GlobalHydra.instance().clear()  # a notebook may have initialised Hydra for something else
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def run(*overrides: str):
    """Train and record one variant; returns its ``RunResult`` (run id, outcome, metrics). A FINISHED run of the
    same config, code and data is reused, as on the command line."""
    from hydra import compose

    from ablate.config import to_run_config
    from ablate.runner import train_and_log

    with _composing():
        cfg = to_run_config(compose("config", overrides=list(overrides)))
    return train_and_log(cfg)


def grid(overrides: Sequence[str]) -> tuple[list[list[str]], list[str], list[str]]:
    """A sweep's jobs (each a list of overrides), its definition and its swept keys, as Hydra's grid sweeper makes
    them: the overrides' sweeps (``a=1,2``, ``seed=range(3)``) and an experiment's ``hydra.sweeper.params``."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ablate.sweeps import grid_shape

    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(list(overrides)) if not o.is_sweep_override()]
    params = compose("config", overrides=fixed, return_hydra_config=True).hydra.sweeper.get("params") or {}
    swept = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    definition = sorted(swept)
    axes = []
    for override in parser.parse_overrides(swept):
        key = override.get_key_element()
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.get_value_element_as_str()]
        axes.append([f"{key}={value}" for value in values])
    return [list(job) for job in itertools.product(*axes)], definition, grid_shape(definition)[0]


def sweep(overrides: Sequence[str], **population: Any) -> str:
    """Train and record a grid as populations under one MLflow parent run; returns the sweep's id. Finished
    variants are reused. ``population``: the population launcher's settings (``max_size``, ``memory_fraction``,
    ``vectorise``; ``config.PopulationSettings``)."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    from ablate.compose import ComposeCache
    from ablate.config import PopulationSettings
    from ablate.runner import train_and_log_all
    from ablate.sweeps import Sweep, announce, how_populations_train
    from ablate.tracking import Tracker

    settings = PopulationSettings(**population)
    with _composing():
        jobs, definition, factors = grid(overrides)
        cache = ComposeCache(lambda groups: compose("config", overrides=list(groups)),
                             GlobalHydra.instance().config_loader())
        cfgs = [cache.run_config(job) for job in jobs]
    the_sweep = Sweep(Tracker(cfgs[0].tracking), definition, len(cfgs), factors)
    announce(how_populations_train(cfgs, settings, "local"))
    train_and_log_all(cfgs, settings, sweep=the_sweep.ref, on_result=lambda cfg, result: the_sweep.job_done())
    the_sweep.close()
    return the_sweep.sweep_id


def runs(sweep_id: Optional[str] = None, *overrides: str) -> pd.DataFrame:
    """A sweep's runs (the latest sweep's without an id) as one row per variant: its params (dotted names), final
    metrics and the train-minus-validation gap. ``overrides`` choose the store (``tracking.uri=...``)."""
    from hydra import compose

    from ablate import UserError
    from ablate.config import to_run_config
    from ablate.tables import load_runs
    from ablate.tracking import Tracker

    with _composing():
        tracker = Tracker(to_run_config(compose("config", overrides=list(overrides))).tracking)
    sweep_id = sweep_id or tracker.latest_sweep_id()
    if sweep_id is None:
        raise UserError(f"no sweep in {tracker.uri} yet: run one, e.g. ablate.sweep(['model.bn=pre,post,none'])")
    return load_runs(tracker, sweep_id)


def judge(*overrides: str) -> str:
    """Judge the claims (``python -m ablate.claims``'s overrides); returns the verdict tables as markdown (also
    printed, written to reports/claims.md and logged to MLflow)."""
    from pathlib import Path

    from ablate.claims import command

    command(list(overrides))
    return Path("reports", "claims.md").read_text()
