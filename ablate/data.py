"""Data sources -> whole tensors, split train / validation / test (seeded, stratified).

Everything a run trains on fits in memory many times over, so the trainer slices whole tensors instead of
going through a per-sample Dataset. Pixels are scaled to [0, 1]. The test split is only for final evaluation.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from ablate import UserError
from ablate.config import DataConfig, DataSource
from ablate.provenance import REPO


class DataError(UserError, ValueError):
    """A data file that is missing or malformed; the message names the file, the row and the fix."""


@dataclass
class Split:
    x: torch.Tensor  # [n, features], float in [0, 1]
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
    def n_features(self) -> int:
        return self.train.x.shape[1]

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
    """Official Fashion-MNIST -> (train pixels, train labels, test pixels, test labels), pixels flattened."""
    train_x, train_y, test_x, test_y = (fetch_idx(Path(folder), name, md5, url) for name, md5 in md5s.items())
    return (train_x.reshape(len(train_x), -1), train_y.astype(np.int64),
            test_x.reshape(len(test_x), -1), test_y.astype(np.int64))


# --------------------------------------------------------------------------------------------- splits
def _split(x: np.ndarray, y: np.ndarray, fraction: float, cfg: DataConfig):
    return train_test_split(x, y, test_size=fraction, random_state=cfg.split_seed,
                            stratify=y if cfg.stratify else None)


def _tensors(x: np.ndarray, y: np.ndarray, scale: float) -> Split:
    return Split(torch.from_numpy(x.astype(np.float32) / scale), torch.from_numpy(y.astype(np.int64)))


def _subsample(x: np.ndarray, y: np.ndarray, cfg: DataConfig):
    """A stratified subset of ``data.limit`` rows, for quick runs."""
    if cfg.limit is None or cfg.limit >= len(y):
        return x, y
    x, _, y, _ = _split(x, y, len(y) - cfg.limit, cfg)
    return x, y


_splits_cache: dict[str, Splits] = {}


def cached_splits(cfg: DataConfig) -> Splits:
    """``load_splits``, once per process for each data config: the jobs of a sweep share it. A relative path
    that does not exist here is looked up in the checkout (its data/), so any working directory works."""
    if cfg.path and not Path(cfg.path).is_absolute() and not Path(cfg.path).exists() and (REPO / cfg.path).exists():
        cfg = replace(cfg, path=str(REPO / cfg.path))
    key = json.dumps(asdict(cfg), sort_keys=True, default=str)
    if key not in _splits_cache:
        _splits_cache[key] = load_splits(cfg)
    return _splits_cache[key]


def load_splits(cfg: DataConfig) -> Splits:
    """Read the configured source and split it: test first (held out), then validation from the rest."""
    if cfg.source == DataSource.idx:  # the official test set stays the test set
        x, y, test_x, test_y = read_idx_dataset(cfg.path, cfg.url)
        x, y = _subsample(x, y, cfg)
        scale, val_share = 255.0, cfg.val_fraction
    else:
        if cfg.source == DataSource.digits:
            from sklearn.datasets import load_digits

            digits = load_digits()
            x, y, scale = digits.data, digits.target.astype(np.int64), 16.0  # digits' pixels are 0..16
        else:
            x, y = read_csv(cfg.path, cfg.n_classes)
            scale = 255.0
        x, y = _subsample(x, y, cfg)
        x, test_x, y, test_y = _split(x, y, cfg.test_fraction, cfg)
        # val_fraction is a share of all rows, so train : val : test = (1 - v - t) : v : t.
        val_share = cfg.val_fraction / (1 - cfg.test_fraction)
    val = None
    if cfg.val_fraction > 0:
        x, val_x, y, val_y = _split(x, y, val_share, cfg)
        val = _tensors(val_x, val_y, scale)
    return Splits(_tensors(x, y, scale), val, _tensors(test_x, test_y, scale), cfg.n_classes)
