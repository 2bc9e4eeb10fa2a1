"""Data sources -> whole tensors, split train / validation / test (seeded, stratified).

Everything a run trains on fits in memory many times over, so the trainer slices whole tensors instead of
going through a per-sample Dataset. Samples keep their shape ([n, C, H, W] images; the MLP flattens them
itself), so one data config serves every model. 8-bit pixels are scaled to [0, 1]; float data is taken as it is.
Sources: the seed's CSV (shipped as the default), sklearn's digits, the official Fashion-MNIST IDX files, a
user's .npz file, or a user's function. The test split is only for final evaluation.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import shutil
import struct
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from ablate import UserError
from ablate.config import DataConfig, DataSource, split_target
from ablate.errors import user_frame
from ablate.paths import SHIPPED
from ablate.provenance import file_digest


class DataError(UserError, ValueError):
    """A data file that is missing or malformed; the message names the file, the row and the fix."""


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


# ---------------------------------------------------------------------------------------------- CSV
def read_csv(path: str | Path, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The seed's CSV (header, label first, then pixels 0-255; plain or gzipped) -> (pixels uint8, labels)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist. Point data.path at a CSV with a header, the label "
                        f"in column 0 and pixels 0-255 after it (or use the default data=fmnist_small).")
    try:
        frame = pd.read_csv(path)  # the C parser types numeric columns fast; text or gaps are found below
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError, OSError) as err:
        raise DataError(f"{path} is not a readable CSV: {err}") from err
    if frame.shape[1] < 2 or len(frame) == 0:
        raise DataError(f"{path}: expected a header, a label column and pixel columns, found "
                        f"{len(frame)} rows x {frame.shape[1]} columns.")
    numeric = all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes)
    values = frame.to_numpy(dtype=np.float64) if numeric else np.empty(0)
    if not numeric or not np.isfinite(values).all():
        _raise_first_bad_cell(path)
    labels, pixels = values[:, 0], values[:, 1:]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels >= n_classes))
    if len(bad):
        raise DataError(f"{path}, line {bad[0] + 2}: label {labels[bad[0]]:g} is not a class in 0..{n_classes - 1}. "
                        f"Fix the row, or set data.n_classes if the data has more classes.")
    bad = np.flatnonzero(((pixels < 0) | (pixels > 255)).any(axis=1))
    if len(bad):
        raise DataError(f"{path}, line {bad[0] + 2}: a pixel lies outside 0..255; pixels must be raw 0-255 values.")
    return pixels.astype(np.uint8), labels.astype(np.int64)


def _raise_first_bad_cell(path: Path) -> None:
    """Re-read the file as text to name the first cell that is not a finite number."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    bad_cell = ~np.isfinite(frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64))
    row, col = map(int, np.argwhere(bad_cell)[0])
    cell = frame.iat[row, col]
    what = "is empty (a short row or a missing value)" if cell == "" else f"holds {cell!r}, not a number"
    # The file's line number of data row i is i + 2 (line 1 is the header).
    raise DataError(f"{path}, line {row + 2}, column {frame.columns[col]!r}: the cell {what}. "
                    f"Every cell must be a number; fix or drop that row.")


# ---------------------------------------------------------------------------------------------- IDX
# MD5 of the *uncompressed* official files: a re-compressed .gz with the same content verifies too.
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


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
    raw = gzip.decompress(target.read_bytes())
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
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist. Point data.path at a .npz file holding x and y (and "
                        f"optionally x_test and y_test).")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = dict(arrays)
    except (OSError, ValueError, EOFError) as err:
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


def _scaled(x: np.ndarray) -> np.ndarray:
    """8-bit pixels to [0, 1]; anything else as it is (float32)."""
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


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


_splits_cache: dict[str, Splits] = {}


def located(cfg: DataConfig) -> DataConfig:
    """A relative path that does not exist here is looked up among ablate's shipped files (``data/`` of the checkout
    or of the installed package), so any working directory works."""
    if cfg.path and not Path(cfg.path).is_absolute() and not Path(cfg.path).exists() and (SHIPPED / cfg.path).exists():
        return replace(cfg, path=str(SHIPPED / cfg.path))
    return cfg


def data_files(cfg: DataConfig) -> list[Path]:
    """The files the source reads: what, besides the config, decides the data (a digest of each goes with a run)."""
    cfg = located(cfg)
    if cfg.source == DataSource.idx:
        return [Path(cfg.path) / f"{name}.gz" for name in FASHION_MNIST_MD5]  # what fetch_idx reads
    return [Path(cfg.path)] if cfg.source in (DataSource.csv, DataSource.npz) else []


def cached_splits(cfg: DataConfig) -> Splits:
    """``load_splits``, once per process for each data config and content of its files (their digests, cached by
    path, size and mtime): the jobs of a sweep share it."""
    cfg = located(cfg)
    key = json.dumps([asdict(cfg), [file_digest(p) for p in data_files(cfg)]], sort_keys=True, default=str)
    if key not in _splits_cache:
        _splits_cache[key] = load_splits(cfg)
    return _splits_cache[key]


def read_source(cfg: DataConfig) -> tuple[np.ndarray, ...]:
    """The configured source as (x, y, x_test, y_test) float samples in their shape; the test pair None where the
    source has no test set of its own."""
    if cfg.source == DataSource.idx:
        x, y, test_x, test_y = read_idx_dataset(cfg.path, cfg.url)
        return _scaled(x)[:, None], y, _scaled(test_x)[:, None], test_y  # [n, 1, 28, 28]
    if cfg.source == DataSource.digits:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), digits.target.astype(np.int64), None, None
    if cfg.source == DataSource.csv:
        x, y = read_csv(cfg.path, cfg.n_classes)
        if cfg.shape is not None:
            if math.prod(cfg.shape) != x.shape[1]:
                raise DataError(f"data.shape={cfg.shape} holds {math.prod(cfg.shape)} values, but the rows of "
                                f"{cfg.path} hold {x.shape[1]} pixels: fix data.shape, or set it to null (flat rows).")
            x = x.reshape(len(x), *cfg.shape)
        return _scaled(x), y, None, None
    source = f"data.path={cfg.path}" if cfg.source == DataSource.npz else f"data.target={cfg.target}"
    x, y, test_x, test_y = read_npz(cfg.path) if cfg.source == DataSource.npz else call_target(cfg.target)
    x, y = validated(source, x, y, cfg.n_classes, "x, y")
    if test_x is not None:
        test_x, test_y = validated(source, test_x, test_y, cfg.n_classes, "x_test, y_test")
        if test_x.shape[1:] != x.shape[1:]:
            raise DataError(f"{source}: test samples have shape {list(test_x.shape[1:])}, training samples "
                            f"{list(x.shape[1:])}; they must match.")
        test_x = _scaled(test_x)
    return _scaled(x), y, test_x, test_y


def load_splits(cfg: DataConfig) -> Splits:
    """Read the configured source and split it: test first (held out, unless the source has its own test set),
    then validation from the rest."""
    x, y, test_x, test_y = read_source(cfg)
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
