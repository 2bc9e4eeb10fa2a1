"""Claims judged from runs: every arm of every claim (conf/claims/) in every context over the seeds, composed
through one ``ComposeCache``, planned once and trained as a resumable sweep; then each claim's per-seed values go to
``analysis.verdicts``, and the tables to ``reports/claims.md`` and the sweep's MLflow run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ablate.analysis.sequential import Stop
from ablate.analysis.verdicts import (ClaimVariants, Judged, Paired, anytime_decisions, compare, firmness, judge,
                                     paired_values, sequential_verdicts, verdict_tables)
from ablate.config.commands import ClaimSpec, JudgeConfig
from ablate.config.identity import config_hash
from ablate.config.run import RunConfig
from ablate.engine.data import cached_splits
from ablate.engine.plan import Plan, make_plan
from ablate.errors import ConfigValueError, DataError
from ablate.execution.compose import ComposeCache
from ablate.execution.runner import Outcome, execute
from ablate.execution.sweeps import Sweep
from ablate.tracking.tracker import Tracker

REPORT = Path("reports") / "claims.md"


def arms(claim: ClaimSpec) -> list[tuple[str, dict[str, Any]]]:
    """The variants a claim needs: (arm name, its overrides), each arm times each spread level."""
    named = [("a", claim.a), ("b", claim.b)]
    if claim.spread_over is None:
        return named
    key = claim.spread_over.key
    return [(name, {**arm, key: level}) for name, arm in named for level in claim.spread_over.levels]


def overrides(values: dict[str, Any]) -> list[str]:
    """An arm as command-line overrides (``model.bn=pre``, ``optim=adam``)."""
    return [f"{key}={value}" for key, value in values.items()]


@dataclass
class Experiment:
    """What the claims need trained: each variant by config hash, and per (claim, context) its variants."""

    variants: dict[str, RunConfig]
    needed: dict[tuple[str, str], ClaimVariants]
    skipped: list[str]  # contexts whose data cannot be read, and why


def compose_experiment(cfg: JudgeConfig, run_overrides: list[str], cache: ComposeCache, seeds: Sequence[int],
                       which: Optional[set[tuple[str, str]]] = None) -> Experiment:
    """Every claim's arms in every context over ``seeds`` (the (claim, context) pairs in ``which``, where given), as
    run configs; a claim's arm that does not compose is one line naming the claim."""
    settings, found = cfg.judge, Experiment({}, {}, [])
    for context, values in settings.contexts.items():
        context_overrides = overrides(values)
        try:
            cached_splits(cache.run_config([*run_overrides, *context_overrides]).data)
        except DataError as err:
            found.skipped.append(f"context {context} skipped: {err}")
            continue
        for name, claim in cfg.claims.items():
            if which is not None and (name, context) not in which:
                continue
            table = found.needed[name, context] = ClaimVariants(list(seeds))
            levels = claim.spread_over.levels if claim.spread_over else [None]
            for (arm, values), level in zip(arms(claim), [level for _ in "ab" for level in levels]):
                for seed in table.seeds:
                    run = _arm_config(cache, name, arm, [*run_overrides, *context_overrides, *overrides(values),
                                                         *settings.seed_overrides(seed, cfg), "experiment_name=claims"])
                    table.hashes[arm, level, seed] = key = config_hash(run)
                    found.variants[key] = run
    return found


def _arm_config(cache: ComposeCache, claim: str, arm: str, job: list[str]) -> RunConfig:
    try:
        return cache.run_config(job)
    except ConfigValueError as err:
        raise ConfigValueError(f"claims.{claim}, arm {arm}: {err}") from None


def judge_claims(cfg: JudgeConfig, command_overrides: list[str], cache: ComposeCache, quiet: bool = False) -> str:
    """Train every arm of every claim in every context over the seeds (resumable; with ``judge.seeds=auto`` in
    rounds, each claim until it is settled), judge, write and record; returns the verdict tables."""
    began = time.perf_counter()
    run_overrides = [o for o in command_overrides if not o.lstrip("+~").startswith(("judge.", "claims", "hydra."))]
    experiment = compose_experiment(cfg, run_overrides, cache, range(cfg.judge.first_seeds))
    plan = make_plan(list(experiment.variants.values()), cfg.judge.population)  # checked before the sweep opens
    sweep = Sweep(Tracker(cfg.tracking), ["claims", *sorted(command_overrides)], len(experiment.variants),
                  ["claims", "seed"], quiet=quiet)
    sweep.announce(f"{len(experiment.variants)} variants composed in {time.perf_counter() - began:.1f} s")
    for line in experiment.skipped:
        sweep.announce(line)
    with sweep.lifecycle():
        runs = train_round(plan, sweep, quiet)
        if cfg.judge.sequential:
            experiment = _more_rounds(cfg, run_overrides, cache, experiment, runs, sweep, quiet)
        sweep.close("(the verdicts: reports/claims.md)")
    text = verdicts(cfg, experiment, runs)
    write_report(cfg, experiment, text, time.perf_counter() - began, sweep, quiet)
    return text


def train_round(plan: Plan, sweep: Sweep, quiet: bool) -> dict[str, dict[str, Any]]:
    """Train a plan's variants in the sweep; each one's final metrics (and the gap) by config hash."""
    sweep.announce(str(plan))
    results = execute(plan, sweep.recording(plan.cfgs, quiet))
    return {config_hash(c): {"status": "FAILED" if r.outcome == Outcome.failed else "FINISHED", **r.metrics,
                             "gap": r.metrics.get("train_eval_acc", math.nan) - r.metrics.get("val_acc", math.nan)}
            for c, r in zip(plan.cfgs, results)
            if r.outcome in (Outcome.finished, Outcome.skipped, Outcome.failed)}


def _more_rounds(cfg: JudgeConfig, run_overrides: list[str], cache: ComposeCache, experiment: Experiment,
                 runs: dict[str, dict[str, Any]], sweep: Sweep, quiet: bool) -> Experiment:
    """``judge.seeds=auto``: after each round every open claim x context is looked at with its anytime-valid
    sequence (Bonferroni over the family); the settled ones stop, the rest get the next round's seeds, up to
    ``judge.max_seeds``. Returns the experiment with each claim's own seeds."""
    settings = cfg.judge
    seeds = len(next(iter(experiment.needed.values())).seeds) if experiment.needed else 0
    while seeds < settings.max_seeds:
        still = _still_open(cfg, experiment, runs)
        if not still:
            break
        more = range(seeds, min(seeds + settings.round_seeds, settings.max_seeds))
        sweep.announce(f"round: seeds {more.start}-{more.stop - 1} for {len(still)} open claim(s) x context(s)")
        grown = compose_experiment(cfg, run_overrides, cache, more, still)
        runs.update(train_round(make_plan(list(grown.variants.values()), settings.population), sweep, quiet))
        for key, table in grown.needed.items():
            experiment.needed[key].seeds.extend(table.seeds)
            experiment.needed[key].hashes.update(table.hashes)
        experiment.variants.update(grown.variants)
        seeds = more.stop
    return experiment


def _still_open(cfg: JudgeConfig, experiment: Experiment, runs: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    """The (claim, context) pairs whose anytime-valid sequence is open on the seeds so far: the same decisions, at
    the same family level, as the table's column (one that no seeds can judge is not trained further)."""
    judged, pairs = compared(cfg, experiment, runs)
    anytime_decisions(judged, cfg.judge, {key: pair.a - pair.b for key, pair in pairs.items()})
    return {(j.name, j.context) for j in judged if j.anytime is not None and j.anytime.stop == Stop.open}


def compared(cfg: JudgeConfig, experiment: Experiment,
             runs: dict[str, dict[str, Any]]) -> tuple[list[Judged], dict[tuple[str, str], Paired]]:
    """Each claim in each context compared seed by seed (before the family's correction), with its paired values."""
    judged, pairs = [], {}
    for (name, context), table in experiment.needed.items():
        pairs[name, context] = paired = paired_values(cfg.claims[name], runs, table)
        judged.append(compare(name, cfg.claims[name], context, paired.a, paired.b, paired.failed, paired.unjudgeable))
    return judged, pairs


def verdicts(cfg: JudgeConfig, experiment: Experiment, runs: dict[str, dict[str, Any]]) -> str:
    """Each claim in each context compared seed by seed, the family judged, the verdicts' firmness: the tables."""
    judged, pairs = compared(cfg, experiment, runs)
    differences = {key: pair.a - pair.b for key, pair in pairs.items()}
    judge(judged, cfg.judge, differences)
    anytime_decisions(judged, cfg.judge, differences)
    if cfg.judge.sequential:  # each claim has its own seeds: firmness re-judges a family on shared subsamples
        sequential_verdicts(judged, cfg.judge)
    else:
        firmness(judged, cfg.judge, pairs)
    return verdict_tables(judged, cfg.judge)


def seed_text(cfg: JudgeConfig) -> str:
    settings = cfg.judge
    return f"auto ({settings.first_seeds} to {settings.max_seeds}, rounds of {settings.round_seeds})" \
        if settings.sequential else str(settings.seeds)


def write_report(cfg: JudgeConfig, experiment: Experiment, text: str, seconds: float, sweep: Sweep,
                 quiet: bool) -> None:
    contexts = ", ".join(dict.fromkeys(context for _, context in experiment.needed))
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(f"# Claims, tested\n\n{len(experiment.variants)} variants, {seed_text(cfg)} seeds, "
                      f"{cfg.trainer.epochs} epochs, contexts: {contexts}; {seconds:.0f} s.\n\n{text}\n" +
                      "".join(f"\n{s}\n" for s in experiment.skipped))
    sweep.tracker.run(sweep.parent.run_id).log_files([REPORT], "report")
    if not quiet:
        print(f"\n{text}\n" + "".join(f"\n{line}" for line in experiment.skipped) +
              f"\n\njudged in {seconds:.0f} s; written: {REPORT} (also logged to the sweep's MLflow run "
              f"{sweep.parent.run_id})")
