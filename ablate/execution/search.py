"""Optuna search over the keys declared in ``search.space`` (conf/search/), trained as populations.

``ablate search [overrides]`` (``make search``; ``make search WORKERS=4`` runs four processes on one study). Each round asks ``search.batch`` trials, trains them at once as one population, reports every epoch's
validation accuracy to the pruner (pruning members one by one) and tells each result. The objective is the final
validation accuracy: the test split is used once, by the best configuration, at the end.

Optuna's heartbeat works only inside ``study.optimize``; with ask/tell, a trial is kept alive by this process's
heartbeat (``liveness``) like a sweep's runs, and a RUNNING trial of a dead worker is marked FAIL and, by
default, queued again with the same params, by the same rule and setting (``tracking.dead_after_s``).
"""

from __future__ import annotations

import logging
import math
import os
import random
import shlex
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, Trial, TrialState

from ablate.config.identity import to_dict, with_values
from ablate.config.launch import PopulationSettings
from ablate.config.run import RunConfig
from ablate.config.search_space import (Distribution, PrunerName, SearchConfig, SearchedKey, searched_keys,
                                        storage_url)
from ablate.engine.plan import make_plan
from ablate.errors import UserError
from ablate.paths import command
from ablate.execution.runner import Outcome, RunResult, execute
from ablate.execution.sweeps import Sweep
from ablate.tracking.liveness import HOST, is_dead
from ablate.tracking.store import connection_failure, mask_url
from ablate.tracking.tracker import RunKind, Tracker

log = logging.getLogger("ablate")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # what the budget counts
OBJECTIVE = "val_acc"


# ------------------------------------------------------------------------------------------ the study
def open_study(cfg: SearchConfig, epochs: int) -> optuna.Study:
    """The study in its storage (created on first use): a journal file by default, or an RDB URL."""
    url = storage_url(cfg)
    if "://" in url:  # postgresql://... for several machines (sqlite:/// works for one process only)
        storage: optuna.storages.BaseStorage = _rdb_storage(url)
    else:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    pruner = {PrunerName.median: optuna.pruners.MedianPruner(cfg.pruner_startup_trials, cfg.pruner_warmup_epochs),
              PrunerName.hyperband: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs),
              PrunerName.none: optuna.pruners.NopPruner()}[cfg.pruner]
    study = optuna.create_study(study_name=cfg.study, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=pruner)
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE])  # optuna-dashboard then shows "val_acc", not "Objective 0"
    # The first process on a fresh study is reproducible from sampler_seed; a process joining a study that
    # has trials (a resume) or an extra worker must not replay the same draws, so its seed mixes in more.
    existing = len(study.get_trials(deepcopy=False))
    seed = cfg.sampler_seed if existing == 0 and cfg.finalize else hash((cfg.sampler_seed, existing, os.getpid()))
    study.sampler = optuna.samplers.TPESampler(seed=seed % 2**32)
    return study


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Workers starting together on a fresh database race to create Optuna's tables: the ones that lose the race
    fail on a duplicate table and succeed once the winner's tables exist."""
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    for _ in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url)
        except SQLAlchemyError:
            time.sleep(random.uniform(0.5, 1.5))
    try:
        return optuna.storages.RDBStorage(url)
    except OperationalError as err:  # still failing: the database is down or does not exist
        raise UserError(f"cannot open the Optuna storage {mask_url(url)}: {connection_failure(err)}. Start the "
                        f"database (or create it), or set search.storage elsewhere (left empty: a journal "
                        f"file).") from err


# ------------------------------------------------------------------------------------------ the space
def suggest(trial: Trial, space: dict[str, SearchedKey]) -> dict[str, Any]:
    """One value per declared key, sampled by the trial (Optuna's parameter names are the config keys)."""
    values = {}
    for key, declared in space.items():
        if declared.type == Distribution.categorical:
            values[key] = trial.suggest_categorical(key, declared.choices)
        elif declared.type == Distribution.off_or_log_uniform and not trial.suggest_categorical(f"{key}.on",
                                                                                                  [True, False]):
            values[key] = 0.0
        else:
            values[key] = trial.suggest_float(key, declared.low, declared.high,
                                              log=declared.type != Distribution.uniform)
    return values


def trial_values(params: dict[str, Any], space: dict[str, SearchedKey]) -> dict[str, Any]:
    """A finished trial's params as config values (0 where an off-or-log-uniform key was switched off)."""
    return {key: params.get(key, 0.0) if params.get(f"{key}.on", True) else 0.0 for key in space}


def fail_dead_trials(study: optuna.Study, cfg: RunConfig) -> int:
    """RUNNING trials of dead workers -> FAIL (and queued again with the same params if ``retry_dead``)."""
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        if is_dead(attrs.get("host"), attrs.get("pid"), attrs.get("heartbeat", started), cfg.tracking.dead_after_s):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            if cfg.search.retry_dead and trial.params:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            failed += 1
    return failed


def ask_within_budget(study: optuna.Study, cfg: SearchConfig) -> list[Trial]:
    """Up to ``batch`` new trials such that COMPLETE + PRUNED + RUNNING never exceeds ``n_trials``.

    Workers racing for the last places all rank the counted trials by number and agree on who is in; a trial
    asked beyond the budget is failed at once (tagged over_budget), so the budget holds exactly.
    """
    remaining = cfg.n_trials - len(study.get_trials(deepcopy=False, states=COUNTED))
    asked = [study.ask() for _ in range(max(0, min(cfg.batch, remaining)))]
    if not asked:
        return []
    inside = set(sorted(t.number for t in study.get_trials(deepcopy=False, states=COUNTED))[:cfg.n_trials])
    kept = []
    for trial in asked:
        if trial.number in inside:
            kept.append(trial)
        else:
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=TrialState.FAIL)
    return kept


# ---------------------------------------------------------------------------------------- the search
def run_search(cfg: RunConfig, quiet: bool = False) -> Optional[FrozenTrial]:
    """Work on the study until its budget is spent, then (if ``search.finalize``) report, export and retrain."""
    s, space = cfg.search, searched_keys(cfg.search.space)
    if cfg.data.val_fraction <= 0:
        raise UserError("the search chooses on validation accuracy: set data.val_fraction > 0 "
                        "(the test split is never used for choosing).")
    if not space:
        raise UserError("search.space declares no key to search: see conf/search/default.yaml.")
    make_plan([cfg], PopulationSettings(max_size=1))  # the data and the model checked before anything is written
    study = open_study(s, cfg.trainer.epochs)
    tracker = Tracker(cfg.tracking)
    sweep = Sweep(tracker, ["search", s.study, mask_url(storage_url(s))], s.n_trials, list(space), kind=RunKind.search)
    with sweep.lifecycle():
        sweep.parent.set_tags({"optuna.study": s.study, "optuna.storage": storage_url(s)})
        while True:
            if fail_dead_trials(study, cfg):
                sweep.announce("trials of a dead worker were marked FAIL" + (" and queued again" if s.retry_dead
                                                                             else ""))
            trials = ask_within_budget(study, s)
            if not trials:
                break
            search_round(cfg, space, study, trials, sweep, quiet)
        if not s.finalize:
            if sweep.progress:
                sweep.progress.close()
            return None
        return finalize(cfg, study, tracker, sweep)


def search_round(cfg: RunConfig, space: dict[str, SearchedKey], study: optuna.Study, trials: list[Trial],
                 sweep: Sweep, quiet: bool) -> None:
    """One round: each trial's seeds (seed, seed + 1, ...) as members of one population with every other trial's,
    the pruner told each epoch, each trial told its result."""
    s = cfg.search
    cfgs = [with_values(cfg, {**suggest(trial, space), "seed": cfg.seed + j})
            for trial in trials for j in range(s.seeds_per_trial)]
    trial_of = {id(c): trials[i // s.seeds_per_trial] for i, c in enumerate(cfgs)}
    for trial in trials:
        for key, value in {"host": HOST, "pid": os.getpid(), "heartbeat": time.time()}.items():
            trial.set_user_attr(key, value)
        sweep.tracker.heartbeat.keep_alive(f"trial {trial.number}",
                                           lambda now, t=trial: t.set_user_attr("heartbeat", now))
    pruner = RoundPruner(s.seeds_per_trial, trial_of)
    plan = make_plan(cfgs, PopulationSettings(max_size=len(cfgs)))
    recording = sweep.recording(plan.cfgs, quiet, kind=RunKind.trial, on_epoch=pruner, tags_of=lambda c: {
        "optuna.study": s.study, "optuna.trial": str(trial_of[id(c)].number)},
        announce=log.debug)  # a round's estimate would repeat every round: the bar over n_trials says it
    done = dict(zip(map(id, plan.cfgs), execute(plan, recording)))
    results = [done[id(c)] for c in cfgs]
    for i, trial in enumerate(trials):
        sweep.tracker.heartbeat.forget(f"trial {trial.number}")
        tell(study, trial, results[i * s.seeds_per_trial:(i + 1) * s.seeds_per_trial], trial.number in pruner.pruned,
             sweep.tracker)


class RoundPruner:
    """The pruner sees a trial's mean over its seeds once all have reported the epoch; a pruned trial's seeds stop
    at their next report."""

    def __init__(self, seeds: int, trial_of: dict[int, Trial]) -> None:
        self.seeds, self.trial_of = seeds, trial_of
        self.values: dict[tuple[int, int], list[float]] = {}
        self.pruned: set[int] = set()

    def __call__(self, cfg: RunConfig, metrics: dict[str, float]) -> bool:
        trial, epoch = self.trial_of[id(cfg)], int(metrics["epoch"])
        seen = self.values.setdefault((trial.number, epoch), [])
        seen.append(metrics[OBJECTIVE])
        if len(seen) == self.seeds:
            trial.report(sum(seen) / len(seen), epoch)
            if trial.should_prune():
                self.pruned.add(trial.number)
        return trial.number in self.pruned


def tell(study: optuna.Study, trial: Trial, mine: list[RunResult], pruned: bool, tracker: Tracker) -> None:
    """A trial's value is its seeds' mean final validation accuracy; a diverged seed makes its trial pruned."""
    finished = not pruned and all(r.outcome in (Outcome.finished, Outcome.skipped) for r in mine)
    if any(r.outcome == Outcome.failed for r in mine):
        trial.set_user_attr("diverged", True)
    value = sum(r.metrics[OBJECTIVE] for r in mine) / len(mine) if finished else None
    frozen = study.tell(trial, value, state=TrialState.COMPLETE if finished else TrialState.PRUNED)
    for result in mine:
        if result.run_id:
            tracker.run(result.run_id).set_tags({"optuna.state": frozen.state.name})


def wait_for_other_workers(study: optuna.Study, cfg: RunConfig) -> None:
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        fail_dead_trials(study, cfg)
        time.sleep(2)


def best_command(trial: FrozenTrial, space: dict[str, SearchedKey]) -> str:
    """``ablate`` with this search's own overrides (``data=digits``, ``model.bn=post``; not its
    ``search.*`` or ``hydra.*`` settings, nor the searched keys) and the trial's values: the trial, retrained."""
    from hydra.core.hydra_config import HydraConfig

    def key(override: str) -> str:
        return override.lstrip("+~").split("=", 1)[0]

    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    kept = [o for o in given if not key(o).startswith(("search.", "hydra.")) and key(o) not in space]
    values = [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial_values(trial.params, space).items()]
    return command(*map(shlex.quote, kept), *values)


def export_best(trial: FrozenTrial, base: RunConfig, folder: Path) -> Path:
    """The best trial as an experiment config holding its whole run config (data, model, optimiser, trainer,
    seed), so ``ablate --config-dir <folder> +experiment=best`` trains the trial again whatever the
    command line that started the search."""
    path = folder / "experiment" / "best.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    best = with_values(base, trial_values(trial.params, searched_keys(base.search.space)))
    trained = to_dict(best)
    body = {"defaults": [{"override /model": type(best.model).family}], "experiment_name": "best",
            **{k: trained[k] for k in ("data", "model", "optim", "trainer", "seed")}}
    path.write_text(f"# @package _global_\n# Best trial {trial.number} of its study: validation accuracy "
                    f"{trial.value:.4f}.\n" + mask_url(OmegaConf.to_yaml(body)))
    return path


def finalize(cfg: RunConfig, study: optuna.Study, tracker: Tracker, sweep: Sweep) -> Optional[FrozenTrial]:
    """Best trial: printed as a command, exported as YAML, retrained with several seeds, tested once."""
    s, space = cfg.search, searched_keys(cfg.search.space)
    wait_for_other_workers(study, cfg)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        sweep.close("(no COMPLETE trial)")
        return None
    best = study.best_trial
    folder = Path("studies") / s.study
    yaml_path = export_best(best, cfg, folder)
    accs = final_test(with_values(cfg, trial_values(best.params, space)), sweep)
    mean = sum(accs) / len(accs) if accs else math.nan
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else math.nan
    states = {state.name: len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    parent = sweep.parent
    logged = parent.params()  # params are write-once: a resumed study keeps its first best
    parent.log_params({f"best.{k}": v for k, v in trial_values(best.params, space).items() if f"best.{k}" not in logged})
    parent.log_metrics({k: v for k, v in {"best_val_acc": best.value, "best_trial": best.number,
                                          "final_test_acc_mean": mean, "final_test_acc_std": std}.items()
                        if not math.isnan(v)})
    parent.log_files([*_plots(study, folder, space), yaml_path], "optuna")
    text = (f"Study {s.study} ({mask_url(storage_url(s))}): " + ", ".join(f"{n} {k}" for k, n in states.items() if n)
            + f"\nbest: trial {best.number}, validation accuracy {best.value:.4f}\n  {best_command(best, space)}\n"
            f"  or: {command('--config-dir', str(folder), '+experiment=best')}   ({yaml_path})\n"
            + (f"best config retrained with {len(accs)} seeds, test accuracy {mean:.4f} ± {std:.4f} (used once)"
               if accs else "best config not retrained (search.final_seeds=0)"))
    sweep.close(text)
    return best


def final_test(best: RunConfig, sweep: Sweep) -> list[float]:
    """The best config retrained with ``search.final_seeds`` seeds: their test accuracies."""
    cfgs = [with_values(best, {"seed": seed}) for seed in range(best.search.final_seeds)]
    if not cfgs:
        return []
    plan = make_plan(cfgs, PopulationSettings(max_size=len(cfgs)))
    results = execute(plan, sweep.recording(plan.cfgs, quiet=True, kind=RunKind.final))
    return [r.metrics["test_acc"] for r in results if r.outcome in (Outcome.finished, Outcome.skipped)]


def _plots(study: optuna.Study, folder: Path, space: dict[str, SearchedKey]) -> list[Path]:
    """Optimisation history, parameter importances, slices, parallel coordinates, and the contour of the first two
    searched ranges, as PNGs (Optuna draws them with pyplot: each figure is closed once saved, the backend left as
    it was)."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    ranges = [k for k, d in space.items() if d.type != Distribution.categorical]
    plots = {"history": lambda: vis.plot_optimization_history(study),
             "importances": lambda: vis.plot_param_importances(study),
             "slice": lambda: vis.plot_slice(study, params=list(space)),
             "parallel_coordinates": lambda: vis.plot_parallel_coordinate(study, params=list(space))}
    if len(ranges) >= 2:
        plots[f"contour_{ranges[0]}_{ranges[1]}"] = lambda: vis.plot_contour(study, params=ranges[:2])
    written = []
    for name, draw in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's "experimental" notices, matplotlib's on too few trials
            try:
                axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as err:  # too few trials for this plot
                log.debug(f"plot {name} skipped: {err}")
                continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        figure.set_size_inches(9 if name != "parallel_coordinates" else 11, 5)
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written
