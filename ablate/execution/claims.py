"""Claims judged from runs: every arm of every claim (conf/claims/) in every context over the seeds, composed
through one ``ComposeCache``, planned once and trained as a resumable sweep; then each claim's per-seed values go to
``analysis.verdicts``, and the tables to ``reports/claims.md`` and the sweep's MLflow run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.analysis.verdicts import (ClaimVariants, Judged, anytime_decisions, compare, firmness, judge, paired_values,
                                     verdict_tables)
from ablate.config.commands import ClaimSpec, JudgeConfig
from ablate.config.identity import config_hash
from ablate.config.run import RunConfig
from ablate.engine.data import cached_splits
from ablate.engine.plan import make_plan
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


def compose_experiment(cfg: JudgeConfig, run_overrides: list[str], cache: ComposeCache) -> Experiment:
    """Every claim's arms in every context over the seeds, as run configs; a claim's arm that does not compose is
    one line naming the claim."""
    settings, found = cfg.judge, Experiment({}, {}, [])
    for context, values in settings.contexts.items():
        context_overrides = overrides(values)
        try:
            cached_splits(cache.run_config([*run_overrides, *context_overrides]).data)
        except DataError as err:
            found.skipped.append(f"context {context} skipped: {err}")
            continue
        for name, claim in cfg.claims.items():
            table = found.needed[name, context] = ClaimVariants(list(range(settings.seeds)))
            levels = claim.spread_over.levels if claim.spread_over else [None]
            for (arm, values), level in zip(arms(claim), [level for _ in "ab" for level in levels]):
                for seed in table.seeds:
                    run = _arm_config(cache, name, arm, [*run_overrides, *context_overrides, *overrides(values),
                                                         f"seed={seed}", "experiment_name=claims"])
                    table.hashes[arm, level, seed] = key = config_hash(run)
                    found.variants[key] = run
    return found


def _arm_config(cache: ComposeCache, claim: str, arm: str, job: list[str]) -> RunConfig:
    try:
        return cache.run_config(job)
    except ConfigValueError as err:
        raise ConfigValueError(f"claims.{claim}, arm {arm}: {err}") from None


def judge_claims(cfg: JudgeConfig, command_overrides: list[str], cache: ComposeCache, quiet: bool = False) -> str:
    """Train every arm of every claim in every context over the seeds (resumable), judge, write and record; returns
    the verdict tables."""
    began = time.perf_counter()
    run_overrides = [o for o in command_overrides if not o.lstrip("+~").startswith(("judge.", "claims", "hydra."))]
    experiment = compose_experiment(cfg, run_overrides, cache)
    cfgs = list(experiment.variants.values())
    plan = make_plan(cfgs, cfg.judge.population)  # the data and models checked before the sweep opens
    sweep = Sweep(Tracker(cfg.tracking), ["claims", *sorted(command_overrides)], len(cfgs), ["claims", "seed"],
                  quiet=quiet)
    for line in [f"{len(cfgs)} variants composed in {time.perf_counter() - began:.1f} s", *experiment.skipped,
                 str(plan)]:
        sweep.announce(line)
    with sweep.lifecycle():
        results = dict(zip(map(id, plan.cfgs), execute(plan, sweep.recording(plan.cfgs, quiet))))
        sweep.close("(the verdicts: reports/claims.md)")
    runs = {config_hash(c): {"status": "FAILED" if r.outcome == Outcome.failed else "FINISHED", **r.metrics,
                             "gap": r.metrics.get("train_eval_acc", math.nan) - r.metrics.get("val_acc", math.nan)}
            for c, r in ((c, results[id(c)]) for c in cfgs)
            if r.outcome in (Outcome.finished, Outcome.skipped, Outcome.failed)}
    text = verdicts(cfg, experiment, runs)
    write_report(cfg, experiment, text, time.perf_counter() - began, sweep, quiet)
    return text


def verdicts(cfg: JudgeConfig, experiment: Experiment, runs: dict[str, dict[str, Any]]) -> str:
    """Each claim in each context compared seed by seed, the family judged, the verdicts' firmness: the tables."""
    judged: list[Judged] = []
    pairs = {}
    for (name, context), table in experiment.needed.items():
        pairs[name, context] = paired = paired_values(cfg.claims[name], runs, table)
        judged.append(compare(name, cfg.claims[name], context, paired.a, paired.b, paired.failed, paired.unjudgeable))
    differences = {key: pair.a - pair.b for key, pair in pairs.items()}
    judge(judged, cfg.judge, differences)
    anytime_decisions(judged, cfg.judge, differences)
    firmness(judged, cfg.judge, pairs)
    return verdict_tables(judged, cfg.judge)


def write_report(cfg: JudgeConfig, experiment: Experiment, text: str, seconds: float, sweep: Sweep,
                 quiet: bool) -> None:
    contexts = ", ".join(dict.fromkeys(context for _, context in experiment.needed))
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(f"# Claims, tested\n\n{len(experiment.variants)} variants, {cfg.judge.seeds} seeds, "
                      f"{cfg.trainer.epochs} epochs, contexts: {contexts}; {seconds:.0f} s.\n\n{text}\n" +
                      "".join(f"\n{s}\n" for s in experiment.skipped))
    sweep.tracker.run(sweep.parent.run_id).log_files([REPORT], "report")
    if not quiet:
        print(f"\n{text}\n" + "".join(f"\n{line}" for line in experiment.skipped) +
              f"\n\njudged in {seconds:.0f} s; written: {REPORT} (also logged to the sweep's MLflow run "
              f"{sweep.parent.run_id})")
