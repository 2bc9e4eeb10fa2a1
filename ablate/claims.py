"""The seed notes' claims, each an experiment with a stated test and a verdict that comes from the data.

``python -m ablate.claims [seeds=5] [epochs=10] [population=64] [overrides...]`` (``make claims``) trains every
arm of every claim over the same seeds (a resumable sweep, trained as populations), then compares arm A with arm B
seed by seed:
a paired t-test of the per-seed difference in the claim's metric. Verdicts:

- supported: the difference points the claimed way and p < 0.05 (one-sided);
- not supported: it points the other way with p < 0.05, or (for an equivalence claim) its 95% CI leaves the margin;
- inconclusive: anything else. Nothing in this module knows which way an outcome "should" go.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd
from scipy import stats

from ablate import UserError, run_interruptible

ALPHA = 0.05
CHANCE_ACC = 0.1  # a diverged run (no metrics) is scored at chance accuracy on 10 classes


@dataclass(frozen=True)
class Claim:
    text: str  # the notes' words
    a: dict[str, str]  # arm A: overrides of the claims' base config
    b: dict[str, str]  # arm B
    metric: str  # compared per seed
    direction: str  # "greater": A's metric > B's; "less": A < B; "equal": |A - B| within margin
    test: str  # the test, in words
    margin: float = 0.0  # "equal" only: relative margin of equivalence
    spread_over: Optional[tuple[str, list[str]]] = None  # compare the spread of the metric over these levels


CLAIMS = [
    Claim("BN before ReLU beats BN after ReLU", {"model.bn": "pre"}, {"model.bn": "post"}, "val_acc", "greater",
          "paired t-test over seeds, final validation accuracy, pre > post"),
    Claim("BN trains faster (fewer epochs)", {"model.bn": "pre"}, {"model.bn": "none"}, "val_acc_auc", "greater",
          "paired t-test, mean validation accuracy over the epochs (area under the learning curve), BN > none"),
    Claim("BN tolerates a higher learning rate (lr 1.0)", {"model.bn": "pre", "optim.lr": "1.0"},
          {"model.bn": "none", "optim.lr": "1.0"}, "val_acc", "greater",
          "paired t-test at lr 1.0, final validation accuracy (a diverged run scores chance, 0.1), BN > none"),
    Claim("BN makes initialisation matter less", {"model.bn": "pre"}, {"model.bn": "none"}, "val_acc", "less",
          "paired t-test of the per-seed spread (max - min) of validation accuracy over init scales 0.2, 1, 5",
          spread_over=("model.init_scale", ["0.2", "1.0", "5.0"])),
    Claim("Dropout regularises (narrows the train-validation gap)", {"model.dropout": "0.5"},
          {"model.dropout": "0.0"}, "gap", "less",
          "paired t-test, train accuracy (eval mode) minus validation accuracy, p=0.5 < p=0"),
    Claim("L2 shrinks the weights", {"optim.weight_decay": "0.001"}, {"optim.weight_decay": "0.0"}, "weight_norm",
          "less", "paired t-test, norm of the weight matrices, lambda=1e-3 < 0"),
    Claim("Under SGD, an L2 penalty lambda equals decoupled decay 2*lambda", {"optim.weight_decay": "0.001"},
          {"optim.weight_decay": "0.002", "optim.l2": "decoupled"}, "weight_norm", "equal",
          "95% CI of the paired difference of weight norms within +-1% of the norm", margin=0.01),
]


def claim_arms(claim: Claim) -> list[dict[str, str]]:
    """The variants a claim needs (an arm times each spread level)."""
    arms = [claim.a, claim.b]
    if claim.spread_over:
        key, levels = claim.spread_over
        arms = [{**arm, key: level} for arm in arms for level in levels]
    return arms


def claim_keys() -> list[str]:
    return sorted({k for c in CLAIMS for arm in claim_arms(c) for k in arm})


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    a_mean: float = math.nan
    b_mean: float = math.nan
    diff: float = math.nan  # mean of the per-seed differences A - B
    ci: tuple[float, float] = (math.nan, math.nan)
    p: float = math.nan
    seeds: int = 0
    note: str = field(default="")


def _per_seed(runs: pd.DataFrame, arm: dict[str, str], base: dict[str, str], metric: str) -> pd.Series:
    """The metric of the runs matching ``arm`` on every claim key (the base config's value where unset)."""
    mask = pd.Series(True, index=runs.index)
    for key, value in {**base, **arm}.items():
        mask &= runs[key].astype(str).map(_canonical) == _canonical(value)
    chosen = runs[mask]
    values = chosen[metric].astype(float)
    if metric in ("val_acc", "test_acc", "val_acc_auc"):
        values = values.where(chosen["status"] == "FINISHED", CHANCE_ACC)  # a diverged run scores chance
    return pd.Series(values.to_numpy(), index=chosen["seed"].astype(int)).sort_index()


def _canonical(value: str) -> str:
    try:
        return repr(float(value))
    except ValueError:
        return value


def judge(claim: Claim, runs: pd.DataFrame, base: dict[str, str]) -> Verdict:
    """A claim's verdict from run data (one row per run: claim keys, seed, status and metrics)."""
    if claim.spread_over:
        key, levels = claim.spread_over

        def spread(arm: dict[str, str]) -> pd.Series:
            table = pd.concat([_per_seed(runs, {**arm, key: lvl}, base, claim.metric) for lvl in levels], axis=1)
            return (table.max(axis=1) - table.min(axis=1))[table.notna().all(axis=1)]

        a, b = spread(claim.a), spread(claim.b)
    else:
        a, b = _per_seed(runs, claim.a, base, claim.metric), _per_seed(runs, claim.b, base, claim.metric)
    paired = pd.concat([a.rename("a"), b.rename("b")], axis=1).dropna()
    n = len(paired)
    if n < 3:
        return Verdict(claim, "inconclusive", seeds=n, note="fewer than 3 paired seeds")
    d = paired["a"] - paired["b"]
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
    verdict = Verdict(claim, "inconclusive", float(paired["a"].mean()), float(paired["b"].mean()), mean,
                      (mean - half, mean + half), seeds=n)
    if claim.direction == "equal":
        bound = claim.margin * float(paired[["a", "b"]].abs().to_numpy().mean())
        verdict.p = float(stats.ttest_rel(paired["a"], paired["b"]).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
        if -bound <= mean - half and mean + half <= bound:
            verdict.verdict = "supported"
        elif mean + half < -bound or mean - half > bound:
            verdict.verdict = "not supported"
        verdict.note = f"margin +-{bound:.4g}"
        return verdict
    claimed = "greater" if claim.direction == "greater" else "less"
    opposite = "less" if claimed == "greater" else "greater"
    if sd == 0:  # identical differences every seed: the sign decides
        verdict.p = 0.0 if mean != 0 else 1.0
        verdict.verdict = "inconclusive" if mean == 0 else ("supported" if (mean > 0) == (claimed == "greater")
                                                            else "not supported")
        return verdict
    verdict.p = float(stats.ttest_rel(paired["a"], paired["b"], alternative=claimed).pvalue)
    if verdict.p < ALPHA:
        verdict.verdict = "supported"
    elif stats.ttest_rel(paired["a"], paired["b"], alternative=opposite).pvalue < ALPHA:
        verdict.verdict = "not supported"
    return verdict


def verdict_table(verdicts: list[Verdict]) -> str:
    from ablate.report import markdown_table

    rows = [{"claim": v.claim.text, "metric": v.claim.metric, "A": _arm(v.claim.a), "B": _arm(v.claim.b),
             "A mean": v.a_mean, "B mean": v.b_mean, "A-B (95% CI)": f"{v.diff:+.4f} [{v.ci[0]:+.4f}, {v.ci[1]:+.4f}]",
             "p": v.p, "seeds": v.seeds, "verdict": v.verdict.upper()} for v in verdicts]
    tests = "\n".join(f"- {v.claim.text}: {v.claim.test}{'; ' + v.note if v.note else ''}" for v in verdicts)
    return markdown_table(pd.DataFrame(rows)) + "\n\nTests:\n" + tests


def _arm(arm: dict[str, str]) -> str:
    return " ".join(f"{k.split('.')[-1]}={v}" for k, v in arm.items())


def main(argv: list[str]) -> None:
    """Train every arm over the seeds (resumable), judge, print and record the verdict table."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    from ablate.config import config_hash, flatten, register_configs, to_run_config
    from ablate.report import load_runs
    from ablate.runner import train_and_log_all
    from ablate.sweep import Sweep
    from ablate.tracking import REPO, Tracker

    ours = ("seeds", "epochs", "population")
    options = dict(a.split("=", 1) for a in argv if a.split("=", 1)[0] in ours)
    overrides = [a for a in argv if a.split("=", 1)[0] not in ours]
    seeds, epochs = int(options.get("seeds", 5)), int(options.get("epochs", 10))
    register_configs()
    variants = [dict(t) for t in sorted({tuple(sorted(arm.items())) for c in CLAIMS for arm in claim_arms(c)})]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        try:
            base_cfg = to_run_config(compose("config", overrides=[*overrides, f"trainer.epochs={epochs}"]))
        except ConfigCompositionException as err:  # a bad override: say which and why, as python -m ablate does
            raise UserError(f"{err}: {err.__cause__}") from err
        configs = [to_run_config(compose("config", overrides=[*overrides, f"trainer.epochs={epochs}",
                                                              *[f"{k}={v}" for k, v in arm.items()], f"seed={seed}",
                                                              "+experiment_name=claims"]))
                   for arm in variants for seed in range(seeds)]
    configs = list({config_hash(c): c for c in configs}.values())  # arms of several claims share variants
    base = {k: str(v) for k, v in flatten(base_cfg).items() if k in claim_keys()}
    tracker = Tracker(base_cfg.tracking)
    definition = ["claims", f"seeds={seeds}", f"epochs={epochs}", *overrides]
    sweep = Sweep(tracker, definition, len(configs), [*claim_keys(), "seed"])
    train_and_log_all(configs, population_size=int(options.get("population", 64)),
                      on_result=lambda cfg, result: sweep.job_done())
    sweep.close()
    runs = load_runs(tracker, sweep.sweep_id, statuses=("FINISHED", "FAILED"))
    text = verdict_table([judge(c, runs, base) for c in CLAIMS])
    out = Path("reports") / "claims.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(f"# The seed notes' claims, tested\n\n{len(runs)} runs, {seeds} seeds, {epochs} epochs; "
                   f"base: {OmegaConf.to_yaml(OmegaConf.create(base)).strip().replace(chr(10), ', ')}\n\n{text}\n")
    tracker.client.log_artifact(sweep.parent_id, str(out), "report")
    print(f"\n{text}\n\nwritten: {out} (also logged to the sweep's MLflow run)")


if __name__ == "__main__":
    run_interruptible(lambda: main(sys.argv[1:]), "finished runs stay recorded and the interrupted ones are marked "
                                                   "KILLED; the same command resumes.")
