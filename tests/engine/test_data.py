import gzip
import hashlib
import importlib.util
import struct

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import train_test_split

from ablate.config import DataConfig, DataSource
from ablate.errors import DataError
from ablate.engine.data import cached_splits, load_splits, parse_idx, read_csv, read_idx_dataset, split_indices
from tests.conftest import REPO, SHARED_DATA

SHIPPED = REPO / "data" / "fmnist_small.csv.gz"


def write_csv(path, rows, header=None):
    header = header or ["label"] + [f"pixel{i}" for i in range(1, 5)]
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


GOOD = [[i % 3, 0, 255, 12, 7] for i in range(40)]


def test_csv_reads_labels_and_pixels(tmp_path):
    pixels, labels = read_csv(write_csv(tmp_path / "ok.csv", GOOD), n_classes=3)
    assert pixels.shape == (40, 4) and pixels.dtype == np.uint8 and pixels[0].tolist() == [0, 255, 12, 7]
    assert labels.tolist()[:4] == [0, 1, 2, 0]


def test_gzipped_csv_reads_the_same(tmp_path):
    plain = write_csv(tmp_path / "ok.csv", GOOD)
    (tmp_path / "ok.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    for a, b in zip(read_csv(plain, 3), read_csv(tmp_path / "ok.csv.gz", 3)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("bad_row, line_words", [
    (["1", "0", "dark", "3", "4"], ["line 7", "'dark'"]),  # a text cell
    (["1", "0", "2"], ["line 7", "empty"]),  # a short row
    (["12", "0", "2", "3", "4"], ["line 7", "label 12"]),  # a label outside 0..9
    (["1", "0", "NaN", "3", "4"], ["line 7", "'NaN'"]),  # a NaN
    (["1", "0", "300", "3", "4"], ["line 7", "0..255"]),  # a pixel out of range
])
def test_malformed_csv_names_file_and_line(tmp_path, bad_row, line_words):
    rows = [r[:] for r in GOOD[:10]]
    rows[5] = bad_row  # data row 5 is line 7 of the file (line 1 is the header)
    path = write_csv(tmp_path / "fmnist_small.csv", rows)
    with pytest.raises(DataError) as err:
        read_csv(path, n_classes=10)
    assert str(path) in str(err.value)
    for word in line_words:
        assert word in str(err.value)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="does not exist.*data.path"):
        read_csv(tmp_path / "nope.csv")


def test_shipped_file_is_the_seeds_data():
    pixels, labels = read_csv(SHIPPED)
    assert pixels.shape == (6000, 784) and set(np.unique(labels)) == set(range(10))


def test_splits_are_disjoint_stratified_seeded_and_scaled():
    cfg = DataConfig(source=DataSource.digits, path=None, val_fraction=0.2, test_fraction=0.2)
    splits, again = load_splits(cfg), load_splits(cfg)
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    assert sum(sizes) == 1797 and abs(sizes[1] - 0.2 * 1797) <= 1 and abs(sizes[2] - 0.2 * 1797) <= 1
    assert torch.equal(splits.test.x, again.test.x)  # seeded
    assert 0 <= splits.train.x.min() and splits.train.x.max() <= 1
    train_share = np.bincount(splits.train.y.numpy(), minlength=10) / len(splits.train)
    test_share = np.bincount(splits.test.y.numpy(), minlength=10) / len(splits.test)
    assert np.abs(train_share - test_share).max() < 0.01  # stratified: the same class mix


def test_split_indices_do_not_overlap(tmp_path):
    rows = [[i % 10, i // 255, i % 255, 0, 0] for i in range(1000)]  # every row distinct
    path = write_csv(tmp_path / "d.csv", rows)
    s = load_splits(DataConfig(path=str(path), val_fraction=0.1, test_fraction=0.2))
    keys = [set(map(tuple, (split.x * 255).round().int().tolist())) for split in (s.train, s.val, s.test)]
    assert sum(map(len, keys)) == 1000 and not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])


def test_notebook_split_is_sklearn_on_the_dataframe():
    """+experiment=seed_notebook: train_test_split(x, y, test_size=0.2, random_state=20) as in the notebook."""
    s = load_splits(DataConfig(path=str(SHIPPED), val_fraction=0.0, test_fraction=0.2, stratify=False))
    df = pd.read_csv(SHIPPED)
    _, xtest, _, ytest = train_test_split(df.iloc[:, 1:] / 255.0, df.iloc[:, 0], test_size=0.2, random_state=20)
    assert s.val is None and len(s.train) == 4800
    assert torch.equal(s.test.y, torch.tensor(ytest.values))
    assert torch.allclose(s.test.x, torch.tensor(xtest.values).float())


# ------------------------------------------------------------------------------------------------ IDX
def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(f">BBBB{array.ndim}I", 0, 0, 8, array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_set(folder, n_train=30, n_test=10):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    folder.mkdir(parents=True, exist_ok=True)
    md5s = {}
    for name, array in arrays.items():
        raw = idx_bytes(array)
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        md5s[name] = hashlib.md5(raw).hexdigest()
    return arrays, md5s


def test_idx_parse_round_trip():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(array)), array)
    with pytest.raises(DataError, match="truncated"):
        parse_idx(idx_bytes(array)[:-1])
    with pytest.raises(DataError, match="magic"):
        parse_idx(b"\x00\x00\x0d\x01" + bytes(8))


def test_idx_download_verifies_and_caches(tmp_path):
    arrays, md5s = write_idx_set(tmp_path / "mirror")
    url = (tmp_path / "mirror").as_uri()  # urllib downloads file:// URLs the same way as https://
    train_x, train_y, test_x, test_y = read_idx_dataset(tmp_path / "cache", url, md5s)
    assert train_x.shape == (30, 28, 28) and np.array_equal(test_y, arrays["t10k-labels-idx1-ubyte"])
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(f"{n}.gz" for n in md5s)
    for f in (tmp_path / "mirror").iterdir():
        f.unlink()  # the cache alone serves the second read
    assert np.array_equal(read_idx_dataset(tmp_path / "cache", url, md5s)[0], train_x)


def test_idx_checksum_mismatch_is_an_error(tmp_path):
    _, md5s = write_idx_set(tmp_path / "data")
    md5s["train-labels-idx1-ubyte"] = "0" * 32
    with pytest.raises(DataError, match="fails its checksum"):
        read_idx_dataset(tmp_path / "data", None, md5s)


def test_idx_offline_names_the_files_and_the_folder(tmp_path):
    with pytest.raises(DataError) as err:
        read_idx_dataset(tmp_path / "fm", "http://127.0.0.1:9/")  # nothing listens on the discard port
    message = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in message and str(tmp_path / "fm") in message
    assert not list((tmp_path / "fm").glob("*.part"))  # no half-written file left behind


@pytest.mark.skipif(not (SHARED_DATA / "fashion-mnist").is_dir(), reason="../shared/data/fashion-mnist is absent")
def test_real_fashion_mnist_idx_files_verify():
    s = load_splits(DataConfig(name="fashion_mnist", source=DataSource.idx, path=str(SHARED_DATA / "fashion-mnist"),
                               val_fraction=0.1))
    assert (len(s.train), len(s.val), len(s.test)) == (54000, 6000, 10000) and s.in_shape == (1, 28, 28)


# ------------------------------------------------------------------------------ sample shapes, your own data
def test_the_shipped_data_and_digits_declare_their_image_shapes():
    from tests.conftest import make_config

    assert cached_splits(make_config().data).in_shape == (1, 28, 28)  # IDX files: see the real files' test
    assert cached_splits(make_config("data=digits").data).in_shape == (1, 8, 8)


def test_digits_are_sklearns_own():
    from sklearn.datasets import load_digits

    from ablate.engine.data import read_digits

    pixels, labels = read_digits()
    reference = load_digits()
    np.testing.assert_array_equal(pixels, reference.data)
    np.testing.assert_array_equal(labels, reference.target)


@pytest.mark.slow
def test_digits_are_read_without_importing_sklearn():
    import subprocess
    import sys

    code = "import sys; from ablate.engine.data import read_digits; read_digits(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_csv_with_a_wrong_declared_shape_names_both_sizes(tmp_path):
    path = write_csv(tmp_path / "d.csv", GOOD)
    with pytest.raises(DataError, match=r"data.shape=\[1, 3, 3\] holds 9 values.*hold 4 pixels"):
        load_splits(DataConfig(name="d", path=str(path), n_classes=3, shape=[1, 3, 3]))
    assert load_splits(DataConfig(name="d", path=str(path), n_classes=3, shape=[1, 2, 2])).in_shape == (1, 2, 2)


def npz_config(path, **fields):
    return DataConfig(name="mine", source=DataSource.npz, path=str(path), n_classes=3, **fields)


def test_npz_keeps_any_sample_shape_scales_uint8_and_keeps_its_own_test_set(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 2, 3, 4), dtype=np.uint8)
    np.savez(tmp_path / "u8.npz", x=x, y=np.arange(60) % 3)
    splits = load_splits(npz_config(tmp_path / "u8.npz"))
    assert splits.in_shape == (2, 3, 4) and splits.train.x.max() <= 1.0 and splits.train.x.dtype == torch.float32
    xf = rng.normal(size=(40, 5)).astype(np.float64)
    np.savez(tmp_path / "f.npz", x=xf, y=np.arange(40) % 3, x_test=xf[:9] * 2, y_test=np.arange(9) % 3)
    splits = load_splits(npz_config(tmp_path / "f.npz"))
    assert len(splits.test) == 9 and torch.allclose(splits.test.x, torch.tensor(xf[:9] * 2, dtype=torch.float32))
    assert len(splits.train) + len(splits.val) == 40  # float data as it is, the file's test set kept


@pytest.mark.parametrize("arrays, message", [
    (dict(x=np.zeros((0, 4)), y=np.zeros(0)), "is empty"),
    (dict(x=np.zeros((10, 4)), y=np.zeros(9)), "10 samples but labels of shape [9]"),
    (dict(x=np.zeros((10, 4)), y=np.full(10, 3)), "label 3 of sample 0 is not a class in 0..2"),
    (dict(x=np.full((10, 4), np.nan), y=np.zeros(10)), "sample 0 holds NaN"),
    (dict(x=np.zeros((10, 4)), y=np.zeros(10), x_test=np.zeros((5, 3)), y_test=np.zeros(5)), "test samples have shape [3]"),
    (dict(x=np.zeros((10, 4)), y=np.zeros(10), x_test=np.zeros((5, 4))), "only one of x_test and y_test"),
    (dict(images=np.zeros((10, 4)), labels=np.zeros(10)), "not ['x', 'y']"),
])
def test_a_malformed_npz_is_one_error_naming_the_file(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_splits(npz_config(tmp_path / "bad.npz"))
    assert message in str(err.value) and "bad.npz" in str(err.value)


def test_a_missing_npz_says_what_to_give(tmp_path):
    with pytest.raises(DataError, match="does not exist.*x and y"):
        load_splits(npz_config(tmp_path / "none.npz"))


def write_module(folder, body):
    (folder / "user_data.py").write_text(body)
    import importlib
    import sys

    sys.path.insert(0, str(folder))
    sys.modules.pop("user_data", None)
    importlib.invalidate_caches()


@pytest.mark.parametrize("returns, test_rows", [
    ("torch.rand(50, 1, 4, 4), torch.arange(50) % 3", 10),  # 20% drawn
    ("np.random.rand(50, 1, 4, 4), np.arange(50) % 3, np.random.rand(7, 1, 4, 4), np.arange(7) % 3", 7),  # its own
    ("Pairs(torch.rand(50, 1, 4, 4), torch.arange(50) % 3)", 10),
    ("Pairs(torch.rand(50, 1, 4, 4), torch.arange(50) % 3), Pairs(torch.rand(7, 1, 4, 4), torch.arange(7) % 3)", 7),
])
def test_a_function_returning_arrays_tensors_or_datasets_is_materialised_once(tmp_path, returns, test_rows):
    write_module(tmp_path, "import numpy as np, torch\n"
                           "class Pairs(torch.utils.data.Dataset):\n"
                           "    def __init__(self, x, y): self.x, self.y = x, y\n"
                           "    def __len__(self): return len(self.y)\n"
                           "    def __getitem__(self, i): return self.x[i], self.y[i]\n"
                           f"def data():\n    return {returns}\n")
    try:
        splits = load_splits(DataConfig(name="mine", source=DataSource.callable, target="user_data.data", n_classes=3))
    finally:
        import sys

        sys.path.remove(str(tmp_path))
    assert splits.in_shape == (1, 4, 4) and len(splits.test) == test_rows
    assert len(splits.train) + len(splits.val) == (40 if test_rows == 10 else 50)  # a drawn test split leaves 40


def test_a_function_that_fails_or_is_missing_names_the_target(tmp_path):
    write_module(tmp_path, "def data():\n    raise IOError('no network')\ndef words():\n    return 'x'\n")
    try:
        for target, message in [("user_data.data", r"raised OSError: no network \(at user_data.py:2: raise "
                                                    r"IOError\('no network'\)\); fix the function"),
                                ("user_data.nothing", "cannot find"),
                                ("user_data.words", "returned str")]:
            with pytest.raises(DataError, match=message):
                load_splits(DataConfig(name="m", source=DataSource.callable, target=target, n_classes=3))
    finally:
        import sys

        sys.path.remove(str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_a_torchvision_dataset_through_a_function(tmp_path):
    write_module(tmp_path, "import torchvision\nfrom torchvision.transforms import ToTensor\n"
                           "def fake():\n    return torchvision.datasets.FakeData(60, (1, 8, 8), 3, ToTensor())\n")
    try:
        splits = load_splits(DataConfig(name="m", source=DataSource.callable, target="user_data.fake", n_classes=3))
    finally:
        import sys

        sys.path.remove(str(tmp_path))
    assert splits.in_shape == (1, 8, 8)


@pytest.mark.parametrize("stratify", [True, False])
def test_the_split_is_scikit_learns_train_test_split_to_the_index(stratify):
    """ablate splits without importing scikit-learn; the indices must be sklearn's, on every shape of input."""
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = int(rng.integers(40, 400))
        y = rng.integers(0, int(rng.integers(2, 11)), n)
        y[:20] = np.arange(20) % (y.max() + 1)  # every class at least twice
        test = float(rng.uniform(0.1, 0.5)) if trial % 3 else int(rng.integers(10, n // 2))
        seed = int(rng.integers(0, 2**31))
        x = np.arange(n)
        try:
            theirs = train_test_split(x, test_size=test, random_state=seed, stratify=y if stratify else None)
        except ValueError:  # a part smaller than the number of classes: both refuse
            with pytest.raises(DataError):
                split_indices(y, test, seed, stratify)
            continue
        ours = split_indices(y, test, seed, stratify)
        assert np.array_equal(theirs[0], ours[0]) and np.array_equal(theirs[1], ours[1]), (n, test, seed)


def test_a_class_too_small_to_stratify_is_one_error_with_the_fix():
    with pytest.raises(DataError, match="at least 2 samples of every class.*data.stratify=false"):
        split_indices(np.array([0] * 10 + [1]), 0.2, 0, True)
