"""Data sources -> whole tensors, split train / validation / test (seeded, stratified), checked before any training.

Everything a run trains on fits in memory many times over, so the trainer slices whole tensors instead of going
through a per-sample Dataset. Samples keep their shape ([n, C, H, W] images; the MLP flattens them itself), so one
data config serves every model. ``data.scale`` says what the values are: raw 0-255 pixels are divided by 255 (and
data already in [0, 1] is refused there: it would train at chance), values in [0, 1] or others are taken as they are.
Sources: the seed's CSV (shipped as the default), sklearn's digits, the official Fashion-MNIST IDX files, a user's
.npz file, or a user's function. A file that is missing, unreadable or malformed is one line naming the file, the
row and the fix. The test split is only for final evaluation.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import math
import shutil
import struct
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ablate.config.run import IDX_FILES, DataConfig, DataSource, Scale, split_target
from ablate.errors import DataError, user_frame


@dataclass
class Split:
    x: torch.Tensor  # [n, *sample shape], float
    y: torch.Tensor  # [n], int64 class labels

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device, dtype: torch.dtype) -> "Split":
        return Split(self.x.to(device=device, dtype=dtype), self.y.to(device))


@dataclass
class Splits:
    train: Split
    val: Optional[Split]  # None where data.val_fraction = 0 (the notebook had no validation split)
    test: Split
    n_classes: int

    @property
    def in_shape(self) -> tuple[int, ...]:
        """One sample's shape: (1, 28, 28) for the shipped images, (F,) for flat rows."""
        return tuple(self.train.x.shape[1:])

    @property
    def n_features(self) -> int:
        return math.prod(self.in_shape)

    def to(self, device: torch.device, dtype: torch.dtype) -> "Splits":
        return Splits(self.train.to(device, dtype), self.val.to(device, dtype) if self.val else None,
                      self.test.to(device, dtype), self.n_classes)


def file_of(path: str | Path, what: str, fix: str) -> Path:
    """``path`` as a file that exists (one line naming it and ``fix`` otherwise: missing, or a folder)."""
    path = Path(path)
    try:
        folder, exists = path.is_dir(), path.is_file()
    except OSError as err:  # a name longer than the file system allows, say
        raise DataError(f"data.path={str(path)[:60]}{'...' if len(str(path)) > 60 else ''} cannot be looked up "
                        f"({err.strerror}): give a shorter path to the file.") from err
    if folder:
        raise DataError(f"data.path={path} is a folder, not a {what} file: point data.path at the file itself.")
    if not exists:
        raise DataError(f"Data file {path} does not exist. Point data.path at {fix}")
    return path


def read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped where it ends in .gz; one line for a file that cannot be read."""
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path} cannot be read ({type(err).__name__}: {err}): check the file and its "
                        f"permissions, or give another data.path.") from err


# ---------------------------------------------------------------------------------------------- CSV
def read_csv(path: str | Path, n_classes: int = 10, scale: Scale = Scale.auto) -> tuple[np.ndarray, np.ndarray]:
    """The seed's CSV (a header, the label first, then the pixels; plain or gzipped) -> (pixels, labels): 8-bit
    pixels for raw 0-255 values (``data.scale`` auto or byte), float32 otherwise."""
    path = file_of(path, "CSV", "a CSV with a header, the label in column 0 and pixels 0-255 after it (or use the "
                                "default data=fmnist_small).")
    raw = read_bytes(path)
    header = raw.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip().split(",")
    if len(header) < 2:
        raise DataError(f"{path}: expected a header, a label column and pixel columns, found {len(header)} column(s).")
    if all(_is_number(cell) for cell in header):
        raise DataError(f"{path} has no header: its first line holds numbers, not column names, and would be lost "
                        f"as one. Add a header line (label,pixel1,pixel2,...).")
    try:
        values = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError:  # a cell that is no number, or a short row: named exactly
        _raise_first_bad_cell(path, raw, len(header))
    if values.shape[0] == 0 or values.shape[1] != len(header):
        _raise_first_bad_cell(path, raw, len(header))
    if not np.isfinite(values).all():
        _raise_first_bad_cell(path, raw, len(header))
    labels, pixels = values[:, 0], values[:, 1:]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels >= n_classes))
    if len(bad):
        raise DataError(f"{path}, line {bad[0] + 2}: label {labels[bad[0]]:g} is not a class in 0..{n_classes - 1}. "
                        f"Fix the row, or set data.n_classes if the data has more classes.")
    byte = scale in (Scale.auto, Scale.byte)
    pixels = checked_scale(pixels, Scale.byte if byte else scale, str(path), lambda row: f", line {row + 2}")
    return (pixels.astype(np.uint8) if byte else pixels.astype(np.float32)), labels.astype(np.int64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _raise_first_bad_cell(path: Path, raw: bytes, columns: int) -> None:
    """Read the file again as text to name the first cell that is not a finite number, or the first short row."""
    lines = raw.decode("utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines[1:], 2):
        cells = line.split(",")
        for column, cell in enumerate(cells):
            if not _is_number(cell) or not math.isfinite(float(cell)):
                what = "is empty (a short row or a missing value)" if cell.strip() == "" else f"holds {cell!r}, not a number"
                raise DataError(f"{path}, line {number}, column {column + 1}: the cell {what}. Every cell must be a "
                                f"number; fix or drop that row.")
        if len(cells) != columns:
            raise DataError(f"{path}, line {number}: {len(cells)} cells where the header has {columns}; the cell "
                            f"{len(cells) + 1} is empty (a short row). Fix or drop that row.")
    raise DataError(f"{path} holds a header but no rows of data: add rows (the label, then the pixels).")


def checked_scale(x: np.ndarray, scale: Scale, source: str, where=lambda row: "") -> np.ndarray:
    """``x`` checked against what ``data.scale`` says it is: byte values in 0..255 and not all within [0, 1] (data
    already scaled would train at chance), unit values in [0, 1]; ``none`` unchecked."""
    rows = x.reshape(len(x), -1)
    if scale == Scale.byte:
        bad = np.flatnonzero(((rows < 0) | (rows > 255)).any(axis=1))
        if len(bad):
            raise DataError(f"{source}{where(bad[0])}: a pixel lies outside 0..255; pixels must be raw 0-255 values "
                            f"(set data.scale=unit for values in [0, 1], data.scale=none to take them as they are).")
        if len(rows) and rows.max() <= 1:
            raise DataError(f"{source}: every value lies in [0, 1], as if already divided by 255, but data.scale "
                            f"expects raw 0-255 pixels (they would be divided again and train at chance): set "
                            f"data.scale=unit.")
    elif scale == Scale.unit:
        bad = np.flatnonzero(((rows < 0) | (rows > 1)).any(axis=1))
        if len(bad):
            raise DataError(f"{source}{where(bad[0])}: a value lies outside [0, 1] where data.scale=unit; set "
                            f"data.scale=byte for raw 0-255 pixels, data.scale=none to take values as they are.")
    return x


# ---------------------------------------------------------------------------------------------- IDX
# MD5 of the *uncompressed* official files: a re-compressed .gz with the same content verifies too.
FASHION_MNIST_MD5 = dict(zip(IDX_FILES, ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                                         "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965")))


def parse_idx(raw: bytes, source: str = "IDX data") -> np.ndarray:
    """IDX bytes (magic 0x0000 0x08 ndim, big-endian dims, uint8 data) -> numpy array."""
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{source} is not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{source} is truncated: its header promises {dims}, it holds {data.size} values.")
    return data.reshape(dims)


def fetch_idx(folder: Path, name: str, md5: str, url: Optional[str]) -> np.ndarray:
    """``folder/name.gz``, downloaded from ``url`` on first use and verified by its content's MD5."""
    target = folder / f"{name}.gz"
    if not target.exists():
        if not url:
            raise DataError(f"{target} is missing and data.url is not set.")
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".gz.part")
        try:
            with urllib.request.urlopen(url.rstrip("/") + f"/{name}.gz", timeout=30) as response, \
                    open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as err:
            partial.unlink(missing_ok=True)
            names = ", ".join(f"{n}.gz" for n in FASHION_MNIST_MD5)
            raise DataError(f"Could not download {name}.gz from {url} ({err}). Without a network, place the "
                            f"four files {names} in {folder}/ and run again.") from err
        partial.rename(target)
    raw = read_bytes(target)
    if hashlib.md5(raw).hexdigest() != md5:
        raise DataError(f"{target} fails its checksum (MD5 of its content should be {md5}): the file is "
                        f"corrupt or not the official one. Delete it to download it again.")
    return parse_idx(raw, str(target))


def read_idx_dataset(folder: str | Path, url: Optional[str],
                     md5s: dict[str, str] = FASHION_MNIST_MD5) -> tuple[np.ndarray, ...]:
    """Official Fashion-MNIST -> (train images [n, 28, 28], train labels, test images, test labels)."""
    train_x, train_y, test_x, test_y = (fetch_idx(Path(folder), name, md5, url) for name, md5 in md5s.items())
    return train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64)


# ------------------------------------------------------------------------------------- your own data
def read_npz(path: str | Path) -> tuple[np.ndarray, ...]:
    """A .npz file's (x, y, x_test, y_test); the test pair is None where the file has none."""
    path = file_of(path, ".npz", "a .npz file holding x and y (and optionally x_test and y_test).")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = dict(arrays)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path} is not a readable .npz file: {err}") from err
    missing = {"x", "y"} - set(found)
    if missing:
        raise DataError(f"{path} holds {sorted(found)}, not {sorted(missing)}: save it with "
                        f"np.savez(path, x=samples, y=labels[, x_test=..., y_test=...]).")
    if ("x_test" in found) != ("y_test" in found):
        raise DataError(f"{path} holds only one of x_test and y_test: give both, or neither (a test split is drawn).")
    return found["x"], found["y"], found.get("x_test"), found.get("y_test")


def call_target(target: str) -> tuple[np.ndarray, ...]:
    """``data.target``'s function called: (x, y), (x, y, x_test, y_test), a torch Dataset of (sample, label) pairs,
    or (train Dataset, test Dataset); tensors or arrays; materialised once into arrays."""
    import importlib

    module_name, name = split_target(target)
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise DataError(f"data.target={target}: cannot find that function ({err}). Give module.function, "
                        f"importable from the working directory.") from err
    try:
        result = function()
    except Exception as err:
        where = user_frame(err, function)
        raise DataError(f"data.target={target}() raised {type(err).__name__}: {err}" +
                        (f" (at {where})" if where else "") + "; fix the function: it returns (x, y), "
                        "(x, y, x_test, y_test) or torch Datasets.") from err
    if isinstance(result, torch.utils.data.Dataset):
        result = (result,)
    if isinstance(result, dict):
        result = tuple(result.get(k) for k in ("x", "y", "x_test", "y_test"))
    if isinstance(result, (tuple, list)) and all(isinstance(r, torch.utils.data.Dataset) for r in result) \
            and len(result) in (1, 2):
        pairs = [_materialise(ds, target) for ds in result]
        return (*pairs[0], *(pairs[1] if len(pairs) == 2 else (None, None)))
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 4):
        raise DataError(f"data.target={target}() returned {type(result).__name__}; return (x, y), (x, y, x_test, "
                        f"y_test), a torch Dataset, or (train Dataset, test Dataset).")
    arrays = [None if r is None else r.numpy() if isinstance(r, torch.Tensor) else np.asarray(r) for r in result]
    return (*arrays, None, None) if len(arrays) == 2 else tuple(arrays)


def _materialise(dataset, target: str) -> tuple[np.ndarray, np.ndarray]:
    """A Dataset's (sample, label) pairs as two arrays: these are small-data ablations, read once."""
    try:
        pairs = [dataset[i] for i in range(len(dataset))]
        xs = np.stack([p[0].numpy() if isinstance(p[0], torch.Tensor) else np.asarray(p[0]) for p in pairs])
        ys = np.asarray([int(p[1]) for p in pairs])
    except Exception as err:
        raise DataError(f"data.target={target}: its Dataset does not give (sample, label) pairs of one shape "
                        f"({type(err).__name__}: {err}); add a transform that returns tensors (e.g. ToTensor()).") from err
    return xs, ys


def validated(source: str, x: np.ndarray, y: np.ndarray, n_classes: int, part: str = "") -> tuple[np.ndarray, np.ndarray]:
    """One clear error, naming the source, for an empty split, lengths that differ, labels outside the classes,
    or samples that are not finite numbers."""
    x, y = np.asarray(x), np.asarray(y)
    what = f"{source}{f' ({part})' if part else ''}"
    if len(x) == 0:
        raise DataError(f"{what} is empty: it needs samples.")
    if y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{what}: {len(x)} samples but labels of shape {list(y.shape)}; give one label per sample.")
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2:
        raise DataError(f"{what}: samples of dtype {x.dtype} and shape {list(x.shape)}; give numbers, [n, ...].")
    if not np.isfinite(x).all():
        raise DataError(f"{what}: sample {int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0][0])} holds NaN or "
                        f"infinity; clean or drop it.")
    labels = y.astype(np.float64)
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels >= n_classes))
    if len(bad):
        raise DataError(f"{what}: label {y[bad[0]]} of sample {bad[0]} is not a class in 0..{n_classes - 1}. Fix it, "
                        f"or set data.n_classes if the data has more classes.")
    return x, y.astype(np.int64)


def scaled(x: np.ndarray, scale: Scale, source: str) -> np.ndarray:
    """The network's input as float32: byte values divided by 255 (auto: 8-bit arrays), the rest as they are."""
    if scale == Scale.auto:
        scale = Scale.byte if x.dtype == np.uint8 else Scale.none
    checked_scale(x, scale, source)
    return x.astype(np.float32) / 255.0 if scale == Scale.byte else x.astype(np.float32)


# --------------------------------------------------------------------------------------------- splits
def split_indices(y: np.ndarray, test: float | int, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices as scikit-learn's ``train_test_split(..., test_size=test, random_state=seed,
    stratify=y if stratify else None)`` computes them, to the index (a test compares the two on many cases), without
    importing scikit-learn into every run's process (0.9 s). ``test``: a fraction, or a number of rows."""
    n = len(y)
    n_test = math.ceil(test * n) if isinstance(test, float) else int(test)
    n_train = n - n_test
    rng = np.random.RandomState(seed)
    if not stratify:
        permutation = rng.permutation(n)
        return permutation[n_test:n_test + n_train], permutation[:n_test]
    classes, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    if class_counts.min() < 2 or min(n_train, n_test) < len(classes):
        raise DataError(f"a stratified split of {n} samples into {n_train} and {n_test} needs at least 2 samples of "
                        f"every class, and each part at least one per class ({len(classes)} classes; class "
                        f"{classes[class_counts.argmin()]} has {class_counts.min()}). Add samples, lower the share "
                        f"split off, or set data.stratify=false.")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test_rows: list[int] = []
    for i in range(len(classes)):
        permuted = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(permuted[:n_i[i]])
        test_rows.extend(permuted[n_i[i]:n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test_rows)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """scikit-learn's approximate mode of the multivariate hypergeometric: per class, its share of the draws,
    rounded down, the rest handed out by largest remainder with ties broken at random."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _split(x: np.ndarray, y: np.ndarray, test: float | int, cfg: DataConfig):
    train, test_rows = split_indices(y, test, cfg.split_seed, cfg.stratify)
    return x[train], x[test_rows], y[train], y[test_rows]


def _tensors(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))


def _subsample(x: np.ndarray, y: np.ndarray, cfg: DataConfig):
    """A stratified subset of ``data.limit`` rows, for quick runs."""
    if cfg.limit is None or cfg.limit >= len(y):
        return x, y
    x, _, y, _ = _split(x, y, len(y) - cfg.limit, cfg)
    return x, y


class _SplitsCache:
    """The splits of the last few data configs, each for the content of its files (path, size and mtime): a sweep's
    jobs share one, and a long notebook session holds at most ``size`` of them."""

    def __init__(self, size: int = 4) -> None:
        self.size, self._found = size, collections.OrderedDict()

    def get(self, cfg: DataConfig) -> Splits:
        key = (repr(cfg), tuple(_stat(p) for p in cfg.files()))
        if key in self._found:
            self._found.move_to_end(key)
        else:
            self._found[key] = load_splits(cfg)
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return self._found[key]


def _stat(path: Path) -> tuple:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), "missing")
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


_splits = _SplitsCache()


def cached_splits(cfg: DataConfig) -> Splits:
    """``load_splits``, once for each data config and content of its files (the last few are kept)."""
    return _splits.get(cfg.located())


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 digits as (pixels [n, 64] 0-16, labels), read from the file ``load_digits`` reads, found through
    the installed distribution's file list: importing sklearn would cost every process that trains on digits about
    1.3 s (scipy, pandas and pyarrow come with it). ``load_digits`` itself where the list does not name the file."""
    from importlib import metadata

    try:
        found = [f for f in metadata.distribution("scikit-learn").files or () if f.name == "digits.csv.gz"]
    except metadata.PackageNotFoundError:
        found = []
    if not found:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data, digits.target
    table = np.loadtxt(found[0].locate(), delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def read_source(cfg: DataConfig) -> tuple[np.ndarray, ...]:
    """The configured source as (x, y, x_test, y_test) float samples in their shape, checked; the test pair None
    where the source has no test set of its own."""
    if cfg.source == DataSource.digits:
        pixels, target = read_digits()
        x, y = validated("data=digits", pixels.reshape(-1, 1, 8, 8), target, cfg.n_classes)
        return (x / 16.0).astype(np.float32), y, None, None
    if cfg.source == DataSource.idx:
        x, y, test_x, test_y = read_idx_dataset(cfg.path, cfg.url)
        x, test_x = x[:, None], test_x[:, None]  # [n, 1, 28, 28]
        source = f"data.path={cfg.path}"
    elif cfg.source == DataSource.csv:
        x, y = read_csv(cfg.path, cfg.n_classes, cfg.scale)
        if cfg.shape is not None:
            if math.prod(cfg.shape) != x.shape[1]:
                raise DataError(f"data.shape={cfg.shape} holds {math.prod(cfg.shape)} values, but the rows of "
                                f"{cfg.path} hold {x.shape[1]} pixels: fix data.shape, or set it to null (flat rows).")
            x = x.reshape(len(x), *cfg.shape)
        test_x = test_y = None
        source = str(cfg.path)
    else:
        source = f"data.path={cfg.path}" if cfg.source == DataSource.npz else f"data.target={cfg.target}"
        x, y, test_x, test_y = read_npz(cfg.path) if cfg.source == DataSource.npz else call_target(cfg.target)
    x, y = validated(source, x, y, cfg.n_classes, "x, y" if test_x is not None else "")
    if test_x is not None:
        test_x, test_y = validated(source, test_x, test_y, cfg.n_classes, "x_test, y_test")
        if test_x.shape[1:] != x.shape[1:]:
            raise DataError(f"{source}: test samples have shape {list(test_x.shape[1:])}, training samples "
                            f"{list(x.shape[1:])}; they must match.")
        test_x = scaled(test_x, cfg.scale, source)
    return scaled(x, cfg.scale, source), y, test_x, test_y


def load_splits(cfg: DataConfig) -> Splits:
    """Read the configured source and split it: test first (held out, unless the source has its own test set),
    then validation from the rest."""
    x, y, test_x, test_y = read_source(cfg.located())
    x, y = _subsample(x, y, cfg)
    if test_x is None:
        x, test_x, y, test_y = _split(x, y, cfg.test_fraction, cfg)
        # val_fraction is a share of all rows, so train : val : test = (1 - v - t) : v : t.
        val_share = cfg.val_fraction / (1 - cfg.test_fraction)
    else:  # the source's own test set stays the test set
        val_share = cfg.val_fraction
    val = None
    if cfg.val_fraction > 0:
        x, val_x, y, val_y = _split(x, y, val_share, cfg)
        val = _tensors(val_x, val_y)
    return Splits(_tensors(x, y), val, _tensors(test_x, test_y), cfg.n_classes)
