"""A run's typed configuration: the single source of its allowed keys, values and defaults.

The YAML groups under ``conf/`` only choose between values; these dataclasses say which values exist and hold every
default. Hydra validates types and enum choices while it composes (``model.bn=foo`` fails there, naming the key and
the choices); each ``__post_init__`` then checks ranges (``model.dropout=1.5``) before any data is read.

A field's role is declared where the field is, as metadata: ``PER_MEMBER`` (members of one population may differ in
it: a seed, a learning rate), ``NOT_TRAINING`` (where results go or how a job is launched: neither a run's numbers
nor its population) and ``SAME_NUMBERS`` (how, not what, is computed: the evaluation batch). Everything else
decides a run's numbers and what its population shares; a new field does both by default.

Model families declare their own config (a ``ModelConfig`` subclass) in ``ablate/engine/families/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Optional

from ablate.config.search_space import SearchConfig
from ablate.errors import ConfigValueError, require
from ablate.paths import SHIPPED

MISSING: Any = "???"  # OmegaConf's mark of a mandatory value: set by a group's option or the command line
PER_MEMBER = {"ablate": "per_member"}
NOT_TRAINING = {"ablate": "not_training"}
SAME_NUMBERS = {"ablate": "same_numbers"}


def split_target(target: str) -> tuple[str, str]:
    """``module.name`` or ``module:name`` (``model.target``, ``data.target``) -> (module, name); module may be empty."""
    module, _, name = target.rpartition(":") if ":" in target else target.rpartition(".")
    return module, name


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
    """What ``trainer.probes`` can measure during training (``ablate/engine/probes.py`` says how)."""

    activations = "activations"  # percentiles, mean and std of each nonlinearity's input (Ioffe & Szegedy 2015)
    covariate_shift = "covariate_shift"  # each layer's gradient before and after earlier layers update (Santurkar 2018)
    landscape = "landscape"  # loss, gradient change and beta-smoothness along the gradient (Santurkar 2018)
    variance_shift = "variance_shift"  # each BN input's validation variance against its running variance (Li 2019)
    norms = "norms"  # each weight matrix's norm and its gradient's


# A run's final metric condensed from its probes -> (the probe metrics it averages over layers, over every probe or the
# last): what claims can compare (``engine.probes.summary`` computes them).
PROBE_SUMMARIES = {
    "covariate_shift_l2": ("covariate_shift/", "/l2", "every"),
    "covariate_shift_cos": ("covariate_shift/", "/cos", "every"),
    "landscape_loss_range": ("landscape/loss_range", "", "every"),  # loss_max - loss_min
    "grad_predictiveness": ("landscape/grad_change_max", "", "every"),
    "beta_smoothness": ("landscape/beta_smoothness", "", "every"),
    "variance_shift": ("variance_shift/", "", "last"),  # at the end of training: what the test sees
}


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


class Scale(str, Enum):
    """What the source's values are, and how they become the network's input (``data.scale``)."""

    auto = "auto"  # the source's own: CSV and IDX pixels and 8-bit arrays as byte; other arrays as they are
    byte = "byte"  # raw 0-255 values, divided by 255 (data already in [0, 1] is refused: it would train at chance)
    unit = "unit"  # values already in [0, 1], taken as they are
    none = "none"  # taken as they are, unchecked (standardised features, say)


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


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


@dataclass
class DataConfig:
    name: str = MISSING  # chosen by the data option (conf/data/)
    source: DataSource = DataSource.csv
    path: Optional[str] = None  # csv, npz: the file; idx: the folder holding the IDX files
    url: Optional[str] = None  # idx: where missing files are downloaded from
    target: Optional[str] = None  # callable: module.function or module:function
    shape: Optional[list[int]] = None  # csv: each row's sample shape, e.g. [1, 28, 28] (None: a flat row)
    n_classes: int = 10
    scale: Scale = Scale.auto  # what the values are: byte (0-255), unit ([0, 1]), none (as they are), auto (by source)
    val_fraction: float = 0.1  # 0 = no validation split (the notebook's setting)
    test_fraction: float = 0.2  # ignored where the source has its own test set (idx)
    split_seed: int = 20  # the notebook's random_state
    stratify: bool = True
    limit: Optional[int] = None  # keep a stratified subset of this many rows (quick runs)
    # training samples only, images only: [crop, flip]; members of one population may augment differently
    augment: list[Augment] = field(default_factory=list, metadata=PER_MEMBER)
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
        require(self.source != DataSource.digits or self.scale == Scale.auto, "data.scale", self.scale.value,
                "auto for data=digits (its values 0-16 are divided by 16)")

    def rows(self) -> "DataConfig":
        """This data without what training does to its samples (augmentation): what decides the splits' rows."""
        return replace(self, augment=[]) if self.augment else self

    def located(self) -> "DataConfig":
        """A relative path that does not exist here is looked up among ablate's shipped files (``data/`` of the
        checkout or of the installed package), so any working directory works."""
        try:
            if self.path and not Path(self.path).is_absolute() and not Path(self.path).exists() and \
                    (SHIPPED / self.path).exists():
                return replace(self, path=str(SHIPPED / self.path))
        except OSError:  # a name the file system refuses: reading the data says so
            pass
        return self

    def files(self) -> list[Path]:
        """The files the source reads: what, besides the config, decides the data (a digest of each goes with a run)."""
        path = self.located().path
        if self.source == DataSource.idx:
            return [Path(path) / f"{name}.gz" for name in IDX_FILES]
        return [Path(path)] if self.source in (DataSource.csv, DataSource.npz) else []


SWITCHES = ("bn", "dropout", "activation")  # the ablation switches a model family may honour


@dataclass
class ModelConfig:
    """What every model family shares: the ablation factors. None means "not set". A family's config subclasses
    this, names the family (``family``) and the switches its models honour (``switches``): setting one it does not
    honour is an error, never a silent no-op."""

    family: ClassVar[str] = ""
    switches: ClassVar[frozenset[str]] = frozenset()
    bn: Optional[BN] = None  # BatchNorm placement: none | pre (layer, BN, ReLU) | post (layer, ReLU, BN)
    dropout: Optional[float] = None  # p of the dropout after each activation
    activation: Optional[Activation] = None  # the nonlinearity: relu | sigmoid | tanh | gelu
    # multiplies every weight of dimension >= 2 after initialisation (init sensitivity)
    init_scale: float = field(default=1.0, metadata=PER_MEMBER)
    bn_stats: BNStats = BNStats.running  # what BatchNorm evaluates with: running averages or precise re-estimates

    def __post_init__(self) -> None:
        require(self.dropout is None or 0 <= self.dropout < 1, "model.dropout", self.dropout, "in [0, 1)")
        require(self.init_scale > 0, "model.init_scale", self.init_scale, "positive")
        for name in SWITCHES:
            if getattr(self, name) is not None and name not in self.switches:
                honoured = ", ".join(f"model.{s}" for s in SWITCHES if s in self.switches) or "none of them"
                raise ConfigValueError(f"model={self.family} does not honour model.{name} (it takes {honoured}): "
                                       f"drop model.{name}, or choose a family that has it.")


@dataclass
class BuiltinModelConfig(ModelConfig):
    """ablate's own families: BN before ReLU and dropout 0.3, as the seed notebook."""

    switches: ClassVar[frozenset[str]] = frozenset(SWITCHES)
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
class OptimConfig:
    name: OptimName = MISSING  # chosen by the optim option (conf/optim/), with its learning rate
    lr: float = field(default=MISSING, metadata=PER_MEMBER)
    momentum: float = field(default=0.0, metadata=PER_MEMBER)  # sgd only
    nesterov: bool = field(default=False, metadata=PER_MEMBER)  # sgd only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata=PER_MEMBER)  # adam only
    eps: float = field(default=1e-8, metadata=PER_MEMBER)  # adam only
    # lambda; applied to weight matrices only, never to biases or BN gamma/beta
    weight_decay: float = field(default=0.0, metadata=PER_MEMBER)
    l2: L2Mode = field(default=L2Mode.penalty, metadata=PER_MEMBER)

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
    # evaluation only: any size gives the same numbers (members of a population share it)
    eval_batch_size: int = field(default=4096, metadata=SAME_NUMBERS)
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
    # A remote task reports its progress for the sweep's bar as often (at most every 10 s).
    heartbeat_s: float = 30.0
    dead_after_s: float = 120.0
    # true: a population's runs are ended in the store by a process of their own while the next population trains
    # (all written before the sweep, search or claims go on). Off by default: on a 2-core CPU, which the trainer
    # keeps busy, it measured no faster end to end; bench/device.sh measures it on a GPU.
    write_behind: bool = False
    # The sweep a job belongs to, set by the sweep itself for its jobs (its id and its MLflow parent run): a job in
    # another process (hydra/launcher=joblib) joins it through its config.
    sweep_id: Optional[str] = None
    parent_run_id: Optional[str] = None

    def __post_init__(self) -> None:
        require(self.heartbeat_s > 0, "tracking.heartbeat_s", self.heartbeat_s, "positive")
        require(self.dead_after_s >= 2 * self.heartbeat_s, "tracking.dead_after_s", self.dead_after_s,
                "at least twice tracking.heartbeat_s")
        require((self.sweep_id is None) == (self.parent_run_id is None), "tracking.sweep_id",
                self.sweep_id, "given together with tracking.parent_run_id (both are set by the sweep)")


class Source(str, Enum):
    """A source of a run's variance: what a seed decides."""

    init = "init"  # the model's initial weights
    order = "order"  # the order of the training batches
    noise = "noise"  # dropout's masks and augmentation's draws
    split = "split"  # which rows are train, validation and test (data.split_seed)


@dataclass
class SeedSources:
    """Each source's own seed; unset, the run's ``seed`` decides it (the data split: ``data.split_seed``). Setting one
    holds that source fixed while ``seed`` varies the rest, or varies it alone."""

    init: Optional[int] = None  # the initial weights; unset: seed
    order: Optional[int] = None  # the order of the training batches; unset: seed
    noise: Optional[int] = None  # dropout's masks and augmentation's draws; unset: seed

    def __post_init__(self) -> None:
        for source in ("init", "order", "noise"):
            value = getattr(self, source)
            require(value is None or 0 <= value < 2**32, f"seeds.{source}", value, "unset or in [0, 2**32)")


@dataclass
class RunConfig:
    data: DataConfig = MISSING  # each chosen by its group's option (conf/config.yaml's defaults list)
    model: ModelConfig = MISSING  # a family's config (model=mlp | cnn | custom | one you register)
    optim: OptimConfig = MISSING
    tracking: TrackingConfig = field(default=MISSING, metadata=NOT_TRAINING)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # used by ablate search only
    search: SearchConfig = field(default_factory=SearchConfig, metadata=NOT_TRAINING)
    seed: int = field(default=42, metadata=PER_MEMBER)  # the notebook's torch.manual_seed
    # a source's own seed (init, order, noise); unset: ``seed``. An unset one leaves the run's identity as it was
    seeds: SeedSources = field(default_factory=SeedSources, metadata=PER_MEMBER)
    # re-run even when a FINISHED run of the same config and code exists
    force: bool = field(default=False, metadata=NOT_TRAINING)
    # set by conf/experiment/*: names the study in MLflow tags
    experiment_name: Optional[str] = field(default=None, metadata=NOT_TRAINING)

    def seed_of(self, source: Source) -> int:
        """The seed that decides ``source`` (init, order or noise) for this run."""
        own = getattr(self.seeds, source.value)
        return self.seed if own is None else own

    def __post_init__(self) -> None:
        from ablate.config.identity import is_config_key
        from ablate.config.search_space import searched_keys

        require(0 <= self.seed < 2**32, "seed", self.seed, "in [0, 2**32)")  # what every generator it seeds takes
        for key in searched_keys(self.search.space):
            require(is_config_key(self, key) and not key.startswith("search."), f"search.space.{key}",
                    "(a declaration)", "a key of the run config (model.dropout, optim.lr, ...)")
