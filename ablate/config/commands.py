"""The commands' own settings, typed like a run's: the claims and their judge (``ablate claims``), the report, the
UI. A wrong key or value fails while Hydra composes, naming it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from ablate.config.identity import is_config_key, missing_key
from ablate.config.launch import PopulationSettings
from ablate.config.run import MISSING, PROBE_SUMMARIES, RunConfig, Source, TrackingConfig
from ablate.errors import ConfigValueError, require


class Direction(str, Enum):
    greater = "greater"  # A's metric is larger than B's
    less = "less"  # A's metric is smaller than B's
    equal = "equal"  # A's and B's differ by less than the minimal effect (an equivalence margin)


class Correction(str, Enum):
    holm = "holm"  # Holm's step-down: the family-wise error rate stays at alpha
    bh = "bh"  # Benjamini-Hochberg: the false discovery rate stays at alpha
    none = "none"


WORST = {"val_acc": 0.0, "test_acc": 0.0, "val_acc_auc": 0.0, "train_eval_acc": 0.0}  # what a failed run scores
CLAIM_METRICS = ("val_acc", "test_acc", "val_acc_auc", "train_eval_acc", "gap", "weight_norm", "train_loss",
                 "test_loss", "val_loss", "epochs_to_target", "running_val_acc", "running_test_acc",
                 *PROBE_SUMMARIES)  # the last: what trainer.probes measured, condensed


@dataclass
class Spread:
    key: str = MISSING  # a config key, e.g. model.init_scale
    levels: list[Any] = MISSING  # its values: the metric's per-seed spread (max - min) over them is compared


@dataclass
class ClaimSpec:
    """A hypothesis judged by ``ablate claims`` (one entry of a file in conf/claims/)."""

    text: str = MISSING  # the claim in words
    a: dict[str, Any] = MISSING  # arm A: config overrides (model.bn: pre, optim: adam, ...)
    b: dict[str, Any] = MISSING  # arm B
    metric: str = "val_acc"  # compared seed by seed: a run's final metric, or gap (train_eval_acc - val_acc)
    direction: Direction = Direction.greater
    minimal_effect: float = 0.01  # the smallest difference that matters, stated in advance (equal: the margin)
    relative: bool = False  # minimal_effect as a fraction of arm B's mean
    spread_over: Optional[Spread] = None  # compare the spread of the metric over these levels instead
    failed_as: Optional[float] = None  # a failed run's metric (0.1: chance on 10 classes); None: the metric's worst
    # (an accuracy's 0); a metric without one (gap, weight_norm, a loss) makes a claim with failures INCONCLUSIVE

    def check(self, name: str) -> None:
        require(self.metric in CLAIM_METRICS, f"claims.{name}.metric", self.metric, f"one of {', '.join(CLAIM_METRICS)}")
        require(self.minimal_effect > 0, f"claims.{name}.minimal_effect", self.minimal_effect, "positive")
        require(bool(self.a) and bool(self.b) and self.a != self.b, f"claims.{name}", [self.a, self.b],
                "two different arms a and b")


@dataclass
class JudgeSettings:
    # per arm and context: a number (30: enough that a rerun on another host gives the same verdicts), or auto:
    # seeds in rounds, each claim stopped where its anytime-valid sequence settles it (analysis/sequential.py)
    seeds: Any = 30
    max_seeds: int = 100  # judge.seeds=auto: where a claim still open stops, INCONCLUSIVE
    round_seeds: int = 8  # judge.seeds=auto: seeds trained per round (the first round: at least 8, the first look)
    min_reach: float = 0.02  # judge.seeds=auto: a claim less likely than this to settle by max_seeds stops (0: never)
    alpha: float = 0.05  # the family's error rate (see correction)
    correction: Correction = Correction.holm  # across every claim x context judged in one command
    power: float = 0.8  # for the minimal detectable effect and the seeds an inconclusive claim would need
    bootstrap: int = 10_000  # resamples of the paired bootstrap interval (seeded: the same table every time)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> overrides, like an arm's
    subsamples: int = 200  # seeded subsamples of the seeds that re-judge every claim: how firm each verdict is
    subsample_share: float = 0.83  # of the seeds each subsample keeps (25 of 30)
    firm: float = 0.9  # a verdict that fewer subsamples reach than this share is marked fragile
    population: PopulationSettings = field(default_factory=PopulationSettings)  # how the runs train together
    # what a claim's seeds vary (init, order, noise, split); the rest held at the base config's (``seed``,
    # ``data.split_seed``). The default: what ``seed`` alone varies, the data split fixed, as the notes' claims need
    vary: list[Source] = field(default_factory=lambda: [Source.init, Source.order, Source.noise])

    def __post_init__(self) -> None:
        require(self.seeds == "auto" or (isinstance(self.seeds, int) and not isinstance(self.seeds, bool) and
                                         self.seeds >= 3), "judge.seeds", self.seeds, "auto or a number, at least 3")
        require(self.max_seeds >= 8, "judge.max_seeds", self.max_seeds, "at least 8 (the first look)")
        require(self.round_seeds >= 1, "judge.round_seeds", self.round_seeds, "at least 1")
        require(0 <= self.min_reach < 1, "judge.min_reach", self.min_reach, "in [0, 1)")
        require(0 < self.alpha < 0.5, "judge.alpha", self.alpha, "in (0, 0.5)")
        require(0 < self.power < 1, "judge.power", self.power, "in (0, 1)")
        require(self.bootstrap >= 100, "judge.bootstrap", self.bootstrap, "at least 100")
        require(self.subsamples >= 0, "judge.subsamples", self.subsamples, "0 or more")
        require(0 < self.subsample_share < 1, "judge.subsample_share", self.subsample_share, "in (0, 1)")
        require(0 < self.firm <= 1, "judge.firm", self.firm, "in (0, 1]")
        require(len(self.vary) > 0, "judge.vary", self.vary, "at least one of init, order, noise, split")

    def seed_overrides(self, seed: int, base: RunConfig) -> list[str]:
        """A claim's seed as overrides: ``seed`` for what it varies, each other source held at the base's seed
        (the data split: varied as ``data.split_seed``, else the base's)."""
        held = [f"seeds.{s.value}={base.seed}" for s in (Source.init, Source.order, Source.noise)
                if s not in self.vary]
        return [f"seed={seed}", *held, *([f"data.split_seed={seed}"] if Source.split in self.vary else [])]

    @property
    def varied_text(self) -> str:
        """Which sources each verdict averages over, and which it holds fixed."""
        varied = [s.value for s in Source if s in self.vary]
        held = [s.value for s in Source if s not in self.vary]
        return ", ".join(varied) + (f" (held fixed: {', '.join(held)})" if held else "")

    @property
    def out_of_reach_text(self) -> str:
        """Why a claim stopped OUT_OF_REACH (``analysis.sequential.reach``)."""
        return f"less than {self.min_reach:.0%} chance to settle by judge.max_seeds={self.max_seeds}"

    @property
    def sequential(self) -> bool:
        return self.seeds == "auto"

    @property
    def first_seeds(self) -> int:
        """The seeds of the first round (all of them, for a fixed count)."""
        return max(8, self.round_seeds) if self.sequential else self.seeds


@dataclass
class JudgeConfig(RunConfig):
    """``ablate claims`` (conf/judge.yaml): a run config (the claims' base) plus the claims to judge."""

    claims: dict[str, ClaimSpec] = field(default_factory=dict)
    judge: JudgeSettings = field(default_factory=JudgeSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.claims), "claims", self.claims, "at least one claim (conf/claims/)")
        require(bool(self.judge.contexts), "judge.contexts", self.judge.contexts, "at least one context (name: {key: value})")
        for name, claim in self.claims.items():
            claim.check(name)
            for arm, values in (("a", claim.a), ("b", claim.b)):
                for key in values:
                    if not (is_config_key(self, key) or key in ("data", "model", "optim")):
                        raise ConfigValueError(f"claims.{name}, arm {arm}: {missing_key(self, key)} An arm sets "
                                               f"config keys or groups (model.bn, optim, ...).")


@dataclass
class ReportConfig:
    """``ablate report`` (conf/report.yaml)."""

    tracking: TrackingConfig = MISSING
    sweep: Optional[str] = None  # the sweep's id (sweep-...); None: the latest sweep in the store
    out: str = "reports"  # the report goes to <out>/<sweep id>/


@dataclass
class UIConfig:
    """``ablate ui`` (conf/ui.yaml)."""

    tracking: TrackingConfig = MISSING
    port: int = 5000
    # the UI's server processes: one serves one reader (MLflow's default, 4, took 10.8 s to start on 2 cores, one 5.7 s)
    workers: int = 1

    def __post_init__(self) -> None:
        require(self.workers >= 1, "workers", self.workers, "at least 1")
