"""Typed configuration: the single source of allowed values.

The YAML groups under ``conf/`` only choose between values; these dataclasses say which values exist.
Hydra validates types and enum choices while it composes (``model.bn=foo`` fails there, naming the key and
the choices); ``to_run_config`` then checks ranges (``model.dropout=1.5``) before any data is loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ablate import UserError


class ConfigValueError(UserError, ValueError):
    """A configuration value outside its allowed range; the message names the key and the range."""


class BN(str, Enum):
    none = "none"  # no BatchNorm
    pre = "pre"  # Linear -> BN -> ReLU (the notes' "case 1")
    post = "post"  # Linear -> ReLU -> BN (the notes' "case 2")


class DataSource(str, Enum):
    csv = "csv"  # label column first, then pixels 0-255 (the seed notebook's format)
    digits = "digits"  # scikit-learn's bundled 8x8 digits
    idx = "idx"  # the official Fashion-MNIST IDX files


class OptimName(str, Enum):
    sgd = "sgd"
    adam = "adam"


class L2Mode(str, Enum):
    penalty = "penalty"  # loss += weight_decay * sum(w**2), as the notes write it
    decoupled = "decoupled"  # w <- w - lr * weight_decay * w in the update (AdamW-style)


class Device(str, Enum):
    auto = "auto"  # cuda, then mps, then cpu
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class DType(str, Enum):
    float32 = "float32"
    float64 = "float64"


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigValueError(f"{key}={value!r} is not allowed: {key} must be {allowed}.")


@dataclass
class DataConfig:
    name: str = "fmnist_small"
    source: DataSource = DataSource.csv
    path: Optional[str] = "data/fmnist_small.csv.gz"  # csv: the file; idx: the folder holding the IDX files
    url: Optional[str] = None  # idx: where missing files are downloaded from
    n_classes: int = 10
    val_fraction: float = 0.1  # 0 = no validation split (the notebook's setting)
    test_fraction: float = 0.2  # ignored where the source has its own test set (idx)
    split_seed: int = 20  # the notebook's random_state
    stratify: bool = True
    limit: Optional[int] = None  # keep a stratified subset of this many rows (quick runs)

    def __post_init__(self) -> None:
        require(0 <= self.val_fraction < 1, "data.val_fraction", self.val_fraction, "in [0, 1)")
        require(0 < self.test_fraction < 1, "data.test_fraction", self.test_fraction, "in (0, 1)")
        require(self.val_fraction + self.test_fraction < 1, "data.val_fraction + data.test_fraction",
                self.val_fraction + self.test_fraction, "below 1")
        require(self.n_classes >= 2, "data.n_classes", self.n_classes, "at least 2")
        require(0 <= self.split_seed < 2**32, "data.split_seed", self.split_seed, "in [0, 2**32)")
        require(self.limit is None or self.limit >= 10 * self.n_classes, "data.limit", self.limit,
                f"null or at least {10 * self.n_classes} (10 rows per class)")
        require(self.source == DataSource.digits or bool(self.path), "data.path", self.path,
                "a file or folder for sources csv and idx")


@dataclass
class ModelConfig:
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    bn: BN = BN.pre
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1  # weight of the current batch in BN's running averages (the notes' 1 - alpha)
    dropout: float = 0.3  # after each activation; 0 = none
    init_scale: float = 1.0  # multiplies PyTorch's default weight initialisation (the init-sensitivity claim)

    def __post_init__(self) -> None:
        require(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "model.hidden", self.hidden,
                "a non-empty list of positive layer widths")
        require(0 <= self.dropout < 1, "model.dropout", self.dropout, "in [0, 1)")
        require(self.bn_eps > 0, "model.bn_eps", self.bn_eps, "positive")
        require(0 < self.bn_momentum <= 1, "model.bn_momentum", self.bn_momentum, "in (0, 1]")
        require(self.init_scale > 0, "model.init_scale", self.init_scale, "positive")


@dataclass
class OptimConfig:
    name: OptimName = OptimName.sgd
    lr: float = 0.1
    momentum: float = 0.0  # sgd only
    nesterov: bool = False  # sgd only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam only
    eps: float = 1e-8  # adam only
    weight_decay: float = 0.0  # lambda; applied to weight matrices only, never to biases or BN gamma/beta
    l2: L2Mode = L2Mode.penalty

    def __post_init__(self) -> None:
        require(self.lr > 0, "optim.lr", self.lr, "positive")
        require(0 <= self.momentum < 1, "optim.momentum", self.momentum, "in [0, 1)")
        require(not self.nesterov or self.momentum > 0, "optim.nesterov", self.nesterov,
                "false unless optim.momentum > 0")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas", self.betas,
                "two numbers in [0, 1)")
        require(self.eps > 0, "optim.eps", self.eps, "positive")
        require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "0 or positive")


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 32
    device: Device = Device.auto
    dtype: DType = DType.float32
    eval_batch_size: int = 4096  # evaluation only; any size gives the same numbers
    target_val_acc: float = 0.8  # "epochs to reach" this validation accuracy is reported per run

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "trainer.epochs", self.epochs, "at least 1")
        require(self.batch_size >= 2, "trainer.batch_size", self.batch_size, "at least 2 (BatchNorm needs 2 rows)")
        require(self.eval_batch_size >= 1, "trainer.eval_batch_size", self.eval_batch_size, "at least 1")
        require(0 < self.target_val_acc <= 1, "trainer.target_val_acc", self.target_val_acc, "in (0, 1]")


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI overrides it (see conf/tracking/mlflow.yaml)
    experiment: str = "ablate"
    # Several workers on one sweep: a RUNNING run is a claim on its variant while its worker stamps it
    # every heartbeat_s; a claim not stamped for claim_timeout_s is taken for dead and its variant trained again.
    heartbeat_s: float = 30.0
    claim_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        require(self.heartbeat_s > 0, "tracking.heartbeat_s", self.heartbeat_s, "positive")
        require(self.claim_timeout_s >= 2 * self.heartbeat_s, "tracking.claim_timeout_s", self.claim_timeout_s,
                "at least twice tracking.heartbeat_s")


class PrunerName(str, Enum):
    median = "median"  # stop a trial whose validation accuracy is below the median of earlier trials' at that epoch
    hyperband = "hyperband"
    none = "none"


@dataclass
class SearchSpace:
    """Ranges Optuna samples from. lambda is off (0) or log-uniform: a log scale cannot reach 0 by itself."""

    dropout: list[float] = field(default_factory=lambda: [0.0, 0.6])  # uniform
    weight_decay: list[float] = field(default_factory=lambda: [1e-6, 1e-2])  # log-uniform, when on
    weight_decay_can_be_zero: bool = True  # a categorical "off" option beside the log-uniform range
    lr: list[float] = field(default_factory=lambda: [1e-3, 1.0])  # log-uniform

    def __post_init__(self) -> None:
        for key, (low, high), floor in [("dropout", self.dropout, 0.0), ("weight_decay", self.weight_decay, 1e-300),
                                        ("lr", self.lr, 1e-300)]:
            require(low < high and low >= floor and (key != "dropout" or high < 1), f"search.space.{key}",
                    [low, high], "[low, high] with low < high" + (", both in [0, 1)" if key == "dropout"
                                                                  else ", both positive (log scale)"))


@dataclass
class SearchConfig:
    study: str = "ablate"
    storage: Optional[str] = None  # None: a journal file studies/<study>.journal; or postgresql://user@host/db
    n_trials: int = 20  # the study's budget: COMPLETE + PRUNED trials, over every worker
    batch: int = 4  # trials asked at once and trained as one population
    sampler_seed: int = 0
    pruner: PrunerName = PrunerName.median
    pruner_startup_trials: int = 4  # trials that finish before any is pruned
    pruner_warmup_epochs: int = 2  # epochs a trial runs before it can be pruned
    stale_after_s: float = 600.0  # a RUNNING trial without a heartbeat for this long belongs to a dead worker
    retry_stale: bool = True  # re-run a dead worker's trial with the same params (else only mark it FAIL)
    final_seeds: int = 3  # the best config retrained with this many seeds, evaluated once on the test split
    finalize: bool = True  # false for extra workers: only one process reports, retrains and exports
    space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self) -> None:
        require(self.n_trials >= 0, "search.n_trials", self.n_trials, "0 or more")
        require(self.batch >= 1, "search.batch", self.batch, "at least 1")
        require(self.final_seeds >= 0, "search.final_seeds", self.final_seeds, "0 or more")
        require(self.stale_after_s > 0, "search.stale_after_s", self.stale_after_s, "positive")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)  # used by python -m ablate.search only
    seed: int = 42  # the notebook's torch.manual_seed
    force: bool = False  # re-run even when a FINISHED run of the same config and code exists
    experiment_name: Optional[str] = None  # set by conf/experiment/*: names the study in MLflow tags

    def __post_init__(self) -> None:
        require(0 <= self.seed < 2**32, "seed", self.seed, "in [0, 2**32)")  # what every generator it seeds takes


def register_configs() -> None:
    """Register the schema that conf/config.yaml starts from, so every group option is validated against it."""
    ConfigStore.instance().store(name="run_schema", node=RunConfig)


def typed_node(cfg: DictConfig) -> DictConfig:
    """The app's part of a composed config (without Hydra's own ``hydra`` node), typed by the schema."""
    if "hydra" not in cfg:
        return cfg
    return OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


def to_run_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """Composed DictConfig -> RunConfig; range checks run here (dataclass __post_init__)."""
    if isinstance(cfg, RunConfig):
        return cfg
    return OmegaConf.to_object(typed_node(cfg))  # type: ignore[return-value]


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Nested plain values (enums as their names), without the search's own settings: what a run is."""
    plain = asdict(cfg, dict_factory=lambda items: {k: v.value if isinstance(v, Enum) else v for k, v in items})
    plain.pop("search")
    return plain


def flatten(cfg: RunConfig) -> dict[str, Any]:
    """Dotted names -> plain values (``model.bn`` -> ``pre``): MLflow params and config hashing use these."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        else:
            flat[prefix[:-1]] = node

    walk("", to_dict(cfg))
    return flat


# Keys that say where results go or how a run is launched, not what is trained.
_NOT_IDENTITY = ("tracking.", "force", "experiment_name", "trainer.eval_batch_size")


def config_hash(cfg: RunConfig) -> str:
    """A stable hash of what determines a run's result: resume and dedup compare runs by it."""
    identity = {k: v for k, v in flatten(cfg).items() if not k.startswith(_NOT_IDENTITY)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
