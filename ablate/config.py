"""A run's typed configuration: the single source of its allowed keys, values and defaults, and the operations on
it (its identity for resume, dotted keys set on it).

The YAML groups under ``conf/`` only choose between values; these dataclasses say which values exist and hold
every default. Hydra validates types and enum choices while it composes (``model.bn=foo`` fails there, naming the
key and the choices); ``to_run_config`` then checks ranges (``model.dropout=1.5``) before any data is loaded. Its
length is the list of settings; the commands' own settings are in ``schemas.py``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import Enum
from typing import Any, ClassVar, Iterator, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from ablate import UserError


class ConfigValueError(UserError, ValueError):
    """A configuration value outside its allowed range; the message names the key and the range."""


class BN(str, Enum):
    none = "none"  # no BatchNorm
    pre = "pre"  # Linear -> BN -> ReLU (the notes' "case 1")
    post = "post"  # Linear -> ReLU -> BN (the notes' "case 2")


class Activation(str, Enum):
    relu = "relu"
    sigmoid = "sigmoid"  # Ioffe & Szegedy's 2015 MNIST network
    tanh = "tanh"
    gelu = "gelu"


class BNStats(str, Enum):
    """Which statistics BatchNorm normalises with at evaluation; training always uses the batch's own."""

    running = "running"  # the exponential running averages updated in training (the notes', PyTorch's default)
    precise = "precise"  # re-estimated over the training split with dropout off before each evaluation (PreciseBN)


class Probe(str, Enum):
    """What ``trainer.probes`` can measure during training (``ablate/probes.py`` says how)."""

    activations = "activations"  # percentiles, mean and std of each nonlinearity's input (Ioffe & Szegedy 2015)
    covariate_shift = "covariate_shift"  # each layer's gradient before and after earlier layers update (Santurkar 2018)
    landscape = "landscape"  # loss, gradient change and beta-smoothness along the gradient (Santurkar 2018)
    variance_shift = "variance_shift"  # each BN input's validation variance against its running variance (Li 2019)
    norms = "norms"  # each weight matrix's norm and its gradient's


class Augment(str, Enum):
    """What ``data.augment`` applies to each training sample, on the device, from the member's own stream."""

    crop = "crop"  # a random crop of the image padded with data.crop_padding zeros on each side (a shift)
    flip = "flip"  # a horizontal flip with probability 1/2


class DataSource(str, Enum):
    csv = "csv"  # label column first, then pixels 0-255 (the seed notebook's format)
    digits = "digits"  # scikit-learn's bundled 8x8 digits, as 1x8x8 images
    idx = "idx"  # the official Fashion-MNIST IDX files, as 1x28x28 images
    npz = "npz"  # a .npz file: x, y (and x_test, y_test), samples of any shape
    callable = "callable"  # a Python function (data.target) returning arrays, tensors or a torch Dataset


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


def split_target(target: str) -> tuple[str, str]:
    """``module.name`` or ``module:name`` (``model.target``, ``data.target``) -> (module, name); module may be empty."""
    module, _, name = target.rpartition(":") if ":" in target else target.rpartition(".")
    return module, name


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigValueError(f"{key}={value!r} is not allowed: {key} must be {allowed}.")


@dataclass
class DataConfig:
    name: str = MISSING  # chosen by the data option (conf/data/)
    source: DataSource = DataSource.csv
    path: Optional[str] = None  # csv, npz: the file; idx: the folder holding the IDX files
    url: Optional[str] = None  # idx: where missing files are downloaded from
    target: Optional[str] = None  # callable: module.function or module:function
    shape: Optional[list[int]] = None  # csv: each row's sample shape, e.g. [1, 28, 28] (None: a flat row)
    n_classes: int = 10
    val_fraction: float = 0.1  # 0 = no validation split (the notebook's setting)
    test_fraction: float = 0.2  # ignored where the source has its own test set (idx)
    split_seed: int = 20  # the notebook's random_state
    stratify: bool = True
    limit: Optional[int] = None  # keep a stratified subset of this many rows (quick runs)
    augment: list[Augment] = field(default_factory=list)  # training samples only, images only: [crop, flip]
    crop_padding: int = 2  # pixels on each side for augment's crop

    def __post_init__(self) -> None:
        require(0 <= self.val_fraction < 1, "data.val_fraction", self.val_fraction, "in [0, 1)")
        require(0 < self.test_fraction < 1, "data.test_fraction", self.test_fraction, "in (0, 1)")
        require(self.val_fraction + self.test_fraction < 1, "data.val_fraction + data.test_fraction",
                self.val_fraction + self.test_fraction, "below 1")
        require(self.n_classes >= 2, "data.n_classes", self.n_classes, "at least 2")
        require(0 <= self.split_seed < 2**32, "data.split_seed", self.split_seed, "in [0, 2**32)")
        require(self.limit is None or self.limit >= 10 * self.n_classes, "data.limit", self.limit,
                f"null or at least {10 * self.n_classes} (10 rows per class)")
        require(self.source in (DataSource.digits, DataSource.callable) or bool(self.path), "data.path", self.path,
                "a file or folder for sources csv, npz and idx")
        require(self.source != DataSource.callable or bool(self.target), "data.target", self.target,
                "a function (module.function) for source callable")
        require(self.shape is None or (len(self.shape) >= 1 and all(d >= 1 for d in self.shape)), "data.shape",
                self.shape, "null or a list of positive sizes")
        require(len(set(self.augment)) == len(self.augment), "data.augment", [a.value for a in self.augment],
                "a list without repeats")
        require(self.crop_padding >= 1, "data.crop_padding", self.crop_padding, "at least 1 (pixels)")

    def rows(self) -> "DataConfig":
        """This data without what training does to its samples (augmentation): what decides the splits' rows, and
        what members of one population share (each may augment its own way)."""
        return replace(self, augment=[]) if self.augment else self


@dataclass
class ModelConfig:
    """What every model family shares: the ablation factors. None means "not set": a custom model then gets no
    such argument (conf: model=mlp | cnn | custom, each a subclass below)."""

    family: ClassVar[str] = ""
    bn: Optional[BN] = None  # BatchNorm placement: none | pre (layer, BN, ReLU) | post (layer, ReLU, BN)
    dropout: Optional[float] = None  # p of the dropout after each activation
    activation: Optional[Activation] = None  # the nonlinearity: relu | sigmoid | tanh | gelu
    init_scale: float = 1.0  # multiplies every weight of dimension >= 2 after initialisation (init sensitivity)
    bn_stats: BNStats = BNStats.running  # what BatchNorm evaluates with: running averages or precise re-estimates

    def __post_init__(self) -> None:
        require(self.dropout is None or 0 <= self.dropout < 1, "model.dropout", self.dropout, "in [0, 1)")
        require(self.init_scale > 0, "model.init_scale", self.init_scale, "positive")


@dataclass
class BuiltinModelConfig(ModelConfig):
    """ablate's own families: BN before ReLU and dropout 0.3, as the seed notebook."""

    bn: Optional[BN] = BN.pre
    dropout: Optional[float] = 0.3  # 0 = none
    activation: Optional[Activation] = Activation.relu
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1  # weight of the current batch in BN's running averages (the notes' 1 - alpha)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.bn is not None, "model.bn", self.bn, f"one of none, pre, post for model={self.family}")
        require(self.dropout is not None, "model.dropout", self.dropout, f"a number in [0, 1) for model={self.family}")
        require(self.activation is not None, "model.activation", self.activation,
                f"one of {', '.join(a.value for a in Activation)} for model={self.family}")
        require(self.bn_eps > 0, "model.bn_eps", self.bn_eps, "positive")
        require(0 < self.bn_momentum <= 1, "model.bn_momentum", self.bn_momentum, "in (0, 1]")


@dataclass
class MLPConfig(BuiltinModelConfig):
    """``model=mlp``: the seed notebook's MLP, flattening its input (784-128-64-10 on the shipped data)."""

    family: ClassVar[str] = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128, 64])

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "model.hidden", self.hidden,
                "a non-empty list of positive layer widths")


@dataclass
class CNNConfig(BuiltinModelConfig):
    """``model=cnn``: blocks of Conv2d, BatchNorm (placed by bn), ReLU, 2x2 max-pooling and dropout; a Linear head."""

    family: ClassVar[str] = "cnn"
    channels: list[int] = field(default_factory=lambda: [16, 32])  # one block per entry, halving the image
    kernel_size: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "model.channels", self.channels,
                "a non-empty list of positive channel counts")
        require(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "model.kernel_size", self.kernel_size,
                "an odd positive size (padding keeps the image's size)")


@dataclass
class CustomConfig(ModelConfig):
    """``model=custom model.target=my_models.Net``: your nn.Module, built as ``Net(in_shape=..., n_classes=...,
    bn=..., dropout=..., **kwargs)`` with only the factors that are set; one it does not take is an error."""

    family: ClassVar[str] = "custom"
    target: str = MISSING  # module.Class or module:Class, importable from the working directory
    kwargs: dict[str, Any] = field(default_factory=dict)  # more constructor arguments: +model.kwargs.width=64


@dataclass
class OptimConfig:
    name: OptimName = MISSING  # chosen by the optim option (conf/optim/), with its learning rate
    lr: float = MISSING
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
    # TF32 for float32 matmuls and convolutions on CUDA: off, so numbers compare across devices; on for speed
    tf32: bool = False
    # Mechanisms measured during training, off by default (trainer.probes=[activations,landscape]): each member
    # every probe_every steps on a fixed batch of the training split's first probe_rows rows; variance_shift over
    # the validation split.
    probes: list[Probe] = field(default_factory=list)
    probe_every: int = 50
    probe_rows: int = 256

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "trainer.epochs", self.epochs, "at least 1")
        require(self.batch_size >= 2, "trainer.batch_size", self.batch_size, "at least 2 (BatchNorm needs 2 rows)")
        require(self.eval_batch_size >= 1, "trainer.eval_batch_size", self.eval_batch_size, "at least 1")
        require(0 < self.target_val_acc <= 1, "trainer.target_val_acc", self.target_val_acc, "in (0, 1]")
        require(self.probe_every >= 1, "trainer.probe_every", self.probe_every, "at least 1 (steps)")
        require(self.probe_rows >= 2, "trainer.probe_rows", self.probe_rows, "at least 2 (BatchNorm needs 2 rows)")
        require(len(set(self.probes)) == len(self.probes), "trainer.probes", [p.value for p in self.probes],
                "a list without repeats")
        require(not (self.device == Device.mps and self.dtype == DType.float64), "trainer.dtype", self.dtype.value,
                "float32 on trainer.device=mps (Apple's MPS has no float64); use trainer.device=cpu for float64")


@dataclass
class TrackingConfig:
    uri: str = MISSING  # conf/tracking/mlflow.yaml: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "ablate"
    # Several workers on one sweep or search: a worker's RUNNING run (or trial) is its lease on a variant while the
    # worker stamps it every heartbeat_s; one not stamped for dead_after_s belongs to a dead worker and is redone.
    heartbeat_s: float = 30.0
    dead_after_s: float = 120.0
    # true: a population's runs are ended in the store by a process of their own (ablate.writer) while the next
    # population trains (all written before the sweep, search or claims go on). Off by default: on a 2-core CPU,
    # which the trainer keeps busy, it measured no faster end to end; bench/device.sh measures it on a GPU.
    write_behind: bool = False

    def __post_init__(self) -> None:
        require(self.heartbeat_s > 0, "tracking.heartbeat_s", self.heartbeat_s, "positive")
        require(self.dead_after_s >= 2 * self.heartbeat_s, "tracking.dead_after_s", self.dead_after_s,
                "at least twice tracking.heartbeat_s")


@dataclass
class PopulationSettings:
    """How many variants train at once: ``hydra.launcher.*`` for sweeps, these defaults for searches and claims."""

    max_size: int = 144  # members trained at once, at most (fewer where memory is short)
    memory_fraction: float = 0.5  # of the device's free memory a population may take; above 1 skips the check
    vectorise: Any = "auto"  # true: members in one vectorised pass; false: one by one; auto: where measured faster

    def __post_init__(self) -> None:
        require(self.vectorise in (True, False, "auto"), "hydra.launcher.vectorise", self.vectorise,
                "true, false or auto")
        require(self.max_size >= 1, "hydra.launcher.max_size", self.max_size, "at least 1")
        require(self.memory_fraction > 0, "hydra.launcher.memory_fraction", self.memory_fraction,
                "positive (above 1 lets populations past the memory check)")


    @property
    def vectorised(self) -> Optional[bool]:
        """True or False as set; None for auto (``train.vectorised_by_default`` decides per family and device)."""
        return None if self.vectorise == "auto" else self.vectorise


class PrunerName(str, Enum):
    median = "median"  # stop a trial whose validation accuracy is below the median of earlier trials' at that epoch
    hyperband = "hyperband"
    none = "none"


class Distribution(str, Enum):
    uniform = "uniform"  # low..high
    log_uniform = "log_uniform"  # low..high on a log scale (both positive)
    categorical = "categorical"  # one of choices
    off_or_log_uniform = "off_or_log_uniform"  # 0 (off), or log-uniform in low..high: a log scale cannot reach 0


@dataclass
class SearchedKey:
    """One config key the search samples, e.g. ``optim.lr: {type: log_uniform, low: 1e-3, high: 1}``."""

    type: Distribution
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[list[Any]] = None

    def check(self, key: str) -> None:
        where = f"search.space.{key}"
        if self.type == Distribution.categorical:
            require(bool(self.choices), where, self.choices, "given choices: [a, b, ...] for type categorical")
            return
        require(self.low is not None and self.high is not None and self.low < self.high, where,
                [self.low, self.high], "given low < high for type " + self.type.value)
        if self.type != Distribution.uniform:
            require(self.low > 0, where, [self.low, self.high], "positive low and high (a log scale)")


def searched_keys(space: dict[str, Any], prefix: str = "") -> dict[str, SearchedKey]:
    """The space's nested declarations as dotted config keys (a node with a ``type`` is one declaration)."""
    found: dict[str, SearchedKey] = {}
    for name, node in space.items():
        key = f"{prefix}{name}"
        if not isinstance(node, dict):
            raise ConfigValueError(f"search.space.{key}={node!r} is not a declaration: give "
                                   f"{{type: uniform|log_uniform|categorical|off_or_log_uniform, low: .., high: ..}} "
                                   f"or {{type: categorical, choices: [..]}}.")
        if "type" not in node:
            found.update(searched_keys(node, f"{key}."))
            continue
        unknown = set(node) - {"type", "low", "high", "choices"}
        require(not unknown, f"search.space.{key}", sorted(unknown), "made of type, low, high, choices only")
        try:
            declared = SearchedKey(Distribution(node["type"]), node.get("low"), node.get("high"), node.get("choices"))
        except ValueError as err:
            raise ConfigValueError(f"search.space.{key}.type={node['type']!r} is not allowed: type must be one of "
                                   f"{', '.join(d.value for d in Distribution)}.") from err
        declared.check(key)
        found[key] = declared
    return found


@dataclass
class SearchConfig:
    study: str = "ablate"
    storage: Optional[str] = None  # None: a journal file studies/<study>.journal; or postgresql://user@host/db
    n_trials: int = 20  # the study's budget: COMPLETE + PRUNED trials, over every worker
    batch: int = 4  # trials asked at once and trained as one population
    seeds_per_trial: int = 1  # a trial's value: its seeds' mean validation accuracy (seed, seed + 1, ...)
    sampler_seed: int = 0
    pruner: PrunerName = PrunerName.median
    pruner_startup_trials: int = 4  # trials that finish before any is pruned
    pruner_warmup_epochs: int = 2  # epochs a trial runs before it can be pruned
    retry_dead: bool = True  # re-run a dead worker's trial with the same params (else only mark it FAIL)
    final_seeds: int = 3  # the best config retrained with this many seeds, evaluated once on the test split
    finalize: bool = True  # false for extra workers: only one process reports, retrains and exports
    space: dict[str, Any] = field(default_factory=dict)  # conf/search/default.yaml: dotted config keys -> SearchedKey

    def __post_init__(self) -> None:
        require(self.n_trials >= 0, "search.n_trials", self.n_trials, "0 or more")
        require(self.batch >= 1, "search.batch", self.batch, "at least 1")
        require(self.seeds_per_trial >= 1, "search.seeds_per_trial", self.seeds_per_trial, "at least 1")
        require(self.final_seeds >= 0, "search.final_seeds", self.final_seeds, "0 or more")
        searched_keys(self.space)  # each declaration checked


@dataclass
class RunConfig:
    data: DataConfig = MISSING  # each chosen by its group's option (conf/config.yaml's defaults list)
    model: ModelConfig = MISSING  # a family: MLPConfig, CNNConfig or CustomConfig
    optim: OptimConfig = MISSING
    tracking: TrackingConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    search: SearchConfig = field(default_factory=SearchConfig)  # used by python -m ablate.search only
    seed: int = 42  # the notebook's torch.manual_seed
    force: bool = False  # re-run even when a FINISHED run of the same config and code exists
    experiment_name: Optional[str] = None  # set by conf/experiment/*: names the study in MLflow tags

    def __post_init__(self) -> None:
        require(0 <= self.seed < 2**32, "seed", self.seed, "in [0, 2**32)")  # what every generator it seeds takes
        for key in searched_keys(self.search.space):
            require(is_config_key(self, key) and not key.startswith("search."), f"search.space.{key}",
                    "(a declaration)", "a key of the run config (model.dropout, optim.lr, ...)")


def typed_node(cfg: DictConfig) -> DictConfig:
    """The app's part of a composed config (without Hydra's own ``hydra`` node), typed by the schema."""
    if "hydra" not in cfg:
        return cfg
    return OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


def to_run_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """Composed DictConfig -> RunConfig; range checks run here (dataclass __post_init__)."""
    if isinstance(cfg, RunConfig):
        return cfg
    return typed_object(typed_node(cfg))


def typed_object(node: DictConfig) -> Any:
    """A composed config as its dataclasses, refusing a key its schema does not have. Hydra refuses
    ``trainer.epoch=5``, suggesting ``+trainer.epoch=5``, which it accepts: OmegaConf would then set an attribute
    nothing reads, and the run would train with the default as if nothing were wrong."""
    for key, known in _unknown_keys(node):
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
        where = key.rsplit(".", 1)[0] + "." if "." in key else ""
        hint = f"did you mean {where}{close[0]}? " if close else ""
        raise ConfigValueError(f"{key} is not a setting ablate has, so nothing would read it ({hint}the settings "
                               f"there: {', '.join(known)}). Set an existing key without '+', e.g. "
                               f"{where}{close[0] if close else known[0]}=<value>.")
    return OmegaConf.to_object(node)


def _unknown_keys(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """(dotted key, the settings its schema has there) for each key a typed node holds beyond its dataclass;
    free-form dicts (``search.space``, ``model.kwargs``) take any key."""
    schema = OmegaConf.get_type(node)
    known = [f.name for f in fields(schema)] if is_dataclass(schema) else None
    for key in node.keys():
        if known is not None and key not in known:
            yield f"{prefix}{key}", known
            continue
        if not OmegaConf.is_missing(node, key) and isinstance(child := node[key], DictConfig):  # None: no node
            yield from _unknown_keys(child, f"{prefix}{key}.")


def to_dict(cfg: RunConfig, with_search: bool = False) -> dict[str, Any]:
    """Nested plain values (enums as their names), without the search's own settings: what a run is."""
    plain = _plain(cfg)
    if not with_search:
        plain.pop("search")
    return plain


def _plain(value: Any) -> Any:
    """A copy in plain values; ``dataclasses.asdict`` would deep-copy every leaf, at a sweep's scale a cost."""
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(cfg: RunConfig, with_search: bool = False) -> dict[str, Any]:
    """Dotted names -> plain values (``model.bn`` -> ``pre``): MLflow params and config hashing use these."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        else:
            flat[prefix[:-1]] = node

    walk("", to_dict(cfg, with_search))
    return {"model.family": type(cfg.model).family, **flat}


def is_config_key(cfg: Any, key: str) -> bool:
    """Whether a dotted key names a field of this config (any key below a dict field, such as model.kwargs)."""
    node = cfg
    for part in key.split("."):
        if isinstance(node, dict):
            return True
        if not is_dataclass(node) or part not in {f.name for f in fields(node)}:
            return False
        node = getattr(node, part)
    return True


def with_values(cfg: Any, values: dict[str, Any]) -> Any:
    """``cfg`` with dotted keys set (``{"optim.lr": 0.05}``), each value converted to its field's type and every
    range check run again: how a sweep's jobs and a search's trials are made from one composed config. Each
    config object is rebuilt once with all its new values, so a check across fields (``tracking.dead_after_s`` at
    least twice ``tracking.heartbeat_s``) sees them together."""
    return _set(cfg, {tuple(key.split(".")): (key, value) for key, value in values.items()})


def _set(node: Any, values: dict[tuple[str, ...], tuple[str, Any]]) -> Any:
    """``values``: path below ``node`` -> (its dotted key, for messages; the value)."""
    below: dict[str, dict[tuple[str, ...], tuple[str, Any]]] = {}
    for path, item in values.items():
        below.setdefault(path[0], {})[path[1:]] = item
    if isinstance(node, dict):
        return {**node, **{name: rest[()][1] if () in rest else _set(node.get(name, {}), rest)
                           for name, rest in below.items()}}
    changes = {}
    for name, rest in below.items():
        key = next(iter(rest.values()))[0]
        if not is_dataclass(node) or name not in {f.name for f in fields(node)}:
            raise ConfigValueError(f"{key} is not a config key (there is no {name!r} there).")
        changes[name] = _convert(rest[()][1], _field_types(type(node))[name], key) if () in rest else \
            _set(getattr(node, name), rest)
    return replace(node, **changes)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, kind: Any, key: str) -> Any:
    """A value as its field's type: an enum from its name, a float from an int (as OmegaConf converts them)."""
    if typing.get_origin(kind) is typing.Union:  # Optional[X]
        if value is None:
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    try:
        if isinstance(kind, type) and issubclass(kind, Enum):
            return kind(value.value if isinstance(value, Enum) else value)
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind in (int, bool, str) and not isinstance(value, kind):
            raise ValueError(f"expected {kind.__name__}")
    except ValueError as err:
        allowed = ", ".join(e.value for e in kind) if isinstance(kind, type) and issubclass(kind, Enum) else kind
        raise ConfigValueError(f"{key}={value!r} is not allowed: {key} must be {allowed}.") from err
    if typing.get_origin(kind) is list:  # each element as the list's type (trainer.probes: [landscape] -> Probe)
        element = typing.get_args(kind)[0] if typing.get_args(kind) else None
        return [v if element is None or element is typing.Any else _convert(v, element, key) for v in value]
    return value


# Keys that say where results go or how a run is launched, not what is trained.
_NOT_IDENTITY = ("tracking.", "force", "experiment_name", "trainer.eval_batch_size")


def config_hash(cfg: RunConfig) -> str:
    """A stable hash of what determines a run's result: resume and dedup compare runs by it."""
    identity = {k: v for k, v in flatten(cfg).items() if not k.startswith(_NOT_IDENTITY)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
