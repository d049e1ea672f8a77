"""Tests for keras_initlab.data: the bundled MNIST sample, local MNIST files, TFDS, verification."""

import doctest
import gzip
import hashlib
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_initlab import data
from keras_initlab.data import DataFileError, Dataset, DatasetNotFoundError, load_dataset, read_idx

BUNDLED = data.mnist.BUNDLED_DIR
N_TINY = 10_012  # the 'mnist' split needs more than 10,000 training images


# ---------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding `array`."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def tiny_mnist(n: int = N_TINY) -> tuple[np.ndarray, np.ndarray]:
    """`n` 28x28 images that carry their own index in pixels (0,0) and (0,1); label = index % 10."""
    index = np.arange(n)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = index % 256
    images[:, 0, 1] = index // 256
    images[:, 27, 27] = 255
    return images, (index % 10).astype(np.uint8)


def image_index(x: np.ndarray) -> np.ndarray:
    """Recover the index `tiny_mnist` wrote into float images."""
    pixels = np.rint(x[:, 0, :2, 0] * 255).astype(int)
    return pixels[:, 0] + 256 * pixels[:, 1]


def write_idx_dir(directory: Path, gz: bool = False, n: int = N_TINY) -> Path:
    """Write tiny train-images/train-labels IDX files (gzipped or not) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = tiny_mnist(n)
    for stem, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        raw = idx_bytes(array)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(raw, compresslevel=1))
        else:
            (directory / stem).write_bytes(raw)
    return directory


def write_npz_dir(directory: Path, n: int = N_TINY) -> Path:
    """Write a tiny Keras-style mnist.npz into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = tiny_mnist(n)
    np.savez(
        directory / "mnist.npz",
        x_train=images,
        y_train=labels,
        x_test=images[:5],
        y_test=labels[:5],
    )
    return directory / "mnist.npz"


def register(monkeypatch, path: Path, algorithm: str) -> None:
    """Make `path`'s digest the known checksum for its name (stand-in for an official file)."""
    digest = hashlib.new(algorithm, path.read_bytes()).hexdigest()
    monkeypatch.setitem(data.KNOWN_CHECKSUMS, path.name, (algorithm, digest))


@pytest.fixture
def no_mnist_anywhere(monkeypatch, tmp_path):
    """No env var, an empty Keras home, and TFDS with an empty data dir and no network."""
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    try:
        import requests
        import tensorflow_datasets as tfds
    except ImportError:
        return tmp_path
    # TFDS reads its default data dir once, at import; downloads go through requests, whose
    # retries take minutes offline. Point the first at an empty dir; make the second fail at once.
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path / "tfds"))

    def no_network(*args, **kwargs):
        raise requests.ConnectionError("network disabled by the test")

    monkeypatch.setattr(requests.Session, "send", no_network)
    return tmp_path


# ---------------------------------------------------------------- mnist-10k (bundled)


def test_bundled_files_match_their_md5():
    expected = {  # MD5SUMS of the official MNIST test files
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    for name, md5 in expected.items():
        assert hashlib.md5((BUNDLED / name).read_bytes()).hexdigest() == md5
        assert data.KNOWN_CHECKSUMS[name] == ("md5", md5)


def test_mnist_10k_shapes_dtypes_and_range():
    ds = load_dataset()
    assert ds.name == "mnist-10k"
    assert ds.x_train.shape == (8000, 28, 28, 1) and ds.x_val.shape == (2000, 28, 28, 1)
    assert ds.y_train.shape == (8000,) and ds.y_val.shape == (2000,)
    assert ds.x_train.dtype == np.float32 and ds.x_val.dtype == np.float32
    assert ds.y_train.dtype == np.int32 and ds.y_val.dtype == np.int32
    assert (ds.image_shape, ds.n_train, ds.n_val, ds.num_classes) == ((28, 28, 1), 8000, 2000, 10)
    for x in (ds.x_train, ds.x_val):
        assert x.min() == 0.0 and x.max() == 1.0
    for y in (ds.y_train, ds.y_val):
        assert set(np.unique(y)) == set(range(10))


def test_mnist_10k_split_is_every_fifth_image_from_index_4():
    ds = load_dataset("mnist-10k")
    raw_images = read_idx(BUNDLED / "t10k-images-idx3-ubyte.gz")
    raw_labels = read_idx(BUNDLED / "t10k-labels-idx1-ubyte.gz")
    assert raw_images.shape == (10000, 28, 28) and raw_labels.shape == (10000,)
    val = np.arange(10000) % 5 == 4
    for j in (0, 1, 777, 1999):  # val[j] is raw[5j + 4]
        np.testing.assert_array_equal(ds.x_val[j, :, :, 0], raw_images[5 * j + 4] / np.float32(255))
        assert ds.y_val[j] == raw_labels[5 * j + 4]
    np.testing.assert_array_equal(ds.x_val[..., 0], raw_images[val] / np.float32(255))
    np.testing.assert_array_equal(ds.x_train[..., 0], raw_images[~val] / np.float32(255))
    np.testing.assert_array_equal(ds.y_val, raw_labels[val])
    np.testing.assert_array_equal(ds.y_train, raw_labels[~val])
    assert ds.y_train[:5].tolist() == [
        7,
        2,
        1,
        0,
        1,
    ]  # raw labels 7 2 1 0 [4] 1 4 ...: index 4 validates


def test_mnist_10k_class_counts_are_plausible():
    ds = load_dataset()
    for y, n in ((ds.y_train, 8000), (ds.y_val, 2000)):
        counts = np.bincount(y, minlength=10)
        assert len(counts) == 10 and counts.sum() == n
        assert (counts > 0.06 * n).all() and (counts < 0.14 * n).all(), counts  # MNIST test set: 8.9%..11.4% per digit


def test_mnist_10k_checksum_and_source():
    ds = load_dataset()
    assert ds.checksum == "md5:9fb629c4189551a2d022fa330f9573f3+ec29112dd5afa0611ce80d1b7f02629c"
    assert Path(ds.source) == BUNDLED


def test_dataset_is_frozen_and_repr_is_short():
    ds = load_dataset()
    with pytest.raises(AttributeError):
        ds.name = "other"
    assert len(repr(ds)) < 300 and "mnist-10k" in repr(ds)


def test_subset_takes_the_first_examples():
    ds = load_dataset()
    small = ds.subset(100, 30)
    np.testing.assert_array_equal(small.x_train, ds.x_train[:100])
    np.testing.assert_array_equal(small.y_val, ds.y_val[:30])
    assert (small.n_train, small.n_val, small.num_classes) == (100, 30, 10)
    assert small.name == "mnist-10k[:100,:30]"
    assert small.checksum == ds.checksum + "[:100,:30]"


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0, 10), ValueError, r"n_train=0"),
        ((8001, 10), ValueError, r"between 1 and 8000.*n_train=8001"),
        ((10, 2001), ValueError, r"between 1 and 2000.*n_val=2001"),
        ((10.0, 10), TypeError, r"n_train=10.0"),
        ((10, True), TypeError, r"n_val=True"),
    ],
)
def test_subset_rejects_bad_sizes(args, error, match):
    with pytest.raises(error, match=match):
        load_dataset().subset(*args)


@pytest.mark.parametrize("module", [data, data.dataset, data.mnist])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted >= 3 and result.failed == 0


# ---------------------------------------------------------------- mnist from local files


def test_mnist_from_raw_idx_dir_uses_nielsen_split(tmp_path, no_mnist_anywhere):
    directory = write_idx_dir(tmp_path / "idx")
    ds = load_dataset("mnist", data_dir=directory)
    assert ds.name == "mnist" and ds.source == str(directory)
    assert ds.x_train.shape == (N_TINY - 10_000, 28, 28, 1) and ds.x_val.shape == (
        10_000,
        28,
        28,
        1,
    )
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    # validation = the last 10,000, both parts in file order
    np.testing.assert_array_equal(image_index(ds.x_train), np.arange(N_TINY - 10_000))
    np.testing.assert_array_equal(image_index(ds.x_val), np.arange(N_TINY - 10_000, N_TINY))
    np.testing.assert_array_equal(ds.y_val, np.arange(N_TINY - 10_000, N_TINY) % 10)
    assert ds.x_train[:, 27, 27, 0].tolist() == [1.0] * ds.n_train
    md5 = [
        hashlib.md5((directory / f).read_bytes()).hexdigest()
        for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    ]
    assert ds.checksum == f"md5:{md5[0]}+{md5[1]}"


def test_mnist_from_gz_idx_dir_verified_and_preferred(tmp_path, monkeypatch, no_mnist_anywhere):
    directory = write_idx_dir(tmp_path / "idx", gz=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        register(monkeypatch, directory / name, "md5")
    # an uncompressed pair beside it that would fail: the .gz pair is the one read
    (directory / "train-images-idx3-ubyte").write_bytes(b"junk")
    (directory / "train-labels-idx1-ubyte").write_bytes(b"junk")
    ds = load_dataset("mnist", data_dir=str(directory))
    assert ds.n_train == N_TINY - 10_000
    np.testing.assert_array_equal(image_index(ds.x_val), np.arange(N_TINY - 10_000, N_TINY))


def test_tiny_gz_under_an_official_name_fails_its_checksum(tmp_path, no_mnist_anywhere):
    directory = write_idx_dir(tmp_path / "idx", gz=True)
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte\.gz: md5 checksum mismatch.*f68b3c2d"):
        load_dataset("mnist", data_dir=directory)


def test_mnist_from_npz(tmp_path, monkeypatch, no_mnist_anywhere):
    npz = write_npz_dir(tmp_path / "npz")
    register(monkeypatch, npz, "sha256")
    ds = load_dataset("mnist", data_dir=npz.parent)
    assert ds.source == str(npz)
    assert ds.checksum == "md5:" + hashlib.md5(npz.read_bytes()).hexdigest()
    assert (ds.n_train, ds.n_val) == (N_TINY - 10_000, 10_000)
    np.testing.assert_array_equal(image_index(ds.x_val), np.arange(N_TINY - 10_000, N_TINY))


def test_npz_that_is_not_keras_copy_fails_keras_sha256(tmp_path, no_mnist_anywhere):
    npz = write_npz_dir(tmp_path / "npz")
    with pytest.raises(DataFileError, match=r"mnist\.npz: sha256 checksum mismatch.*731c5ac6"):
        load_dataset("mnist", data_dir=npz.parent)


def test_search_order_data_dir_then_env_then_keras_cache(tmp_path, monkeypatch, no_mnist_anywhere):
    arg_dir = write_idx_dir(tmp_path / "arg")
    env_dir = write_idx_dir(tmp_path / "env")
    keras_npz = write_npz_dir(tmp_path / "keras_home" / "datasets")
    register(monkeypatch, keras_npz, "sha256")
    monkeypatch.setenv(data.DATA_ENV_VAR, str(env_dir))
    assert load_dataset("mnist", data_dir=arg_dir).source == str(arg_dir)
    assert load_dataset("mnist").source == str(env_dir)
    monkeypatch.delenv(data.DATA_ENV_VAR)
    assert load_dataset("mnist").source == str(keras_npz)


@pytest.mark.parametrize(
    "data_dir, reason",
    [
        ("missing", "no such directory"),
        ("empty", r"no train-images-idx3-ubyte\[\.gz\] \+ train-labels-idx1-ubyte\[\.gz\], no mnist\.npz"),
        ("half", r"has train-images-idx3-ubyte\.gz but no train-labels-idx1-ubyte\[\.gz\]"),
        ("a-file", "not a directory"),
        ("z" * 5000, r"cannot be read \(File name too long\)"),
    ],
)
def test_a_data_dir_without_mnist_fails_at_once_naming_it(tmp_path, monkeypatch, no_mnist_anywhere, data_dir, reason):
    """A `data_dir` given is the one place looked at: not another copy (here a good one in $KERAS_INITLAB_DATA),
    not TensorFlow Datasets, whose download hangs for minutes offline."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(data.DATA_ENV_VAR, str(write_idx_dir(tmp_path / "good")))
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds, "builder", lambda *args, **kwargs: pytest.fail("TensorFlow Datasets asked"))
    started = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", data_dir=data_dir)
    assert time.monotonic() - started < 5
    shown = f"'{data_dir}'" if len(data_dir) < 80 else "'" + "z" * 79 + r"\.\.\. \(5002 characters\)"
    assert re.fullmatch(
        rf"data_dir {shown}: {reason}; for 'mnist' it must hold train-images-idx3-ubyte\.gz and "
        r"train-labels-idx1-ubyte\.gz \(or uncompressed\) or Keras' mnist\.npz",
        str(info.value),
    )


def test_bad_file_in_an_earlier_place_is_an_error_not_skipped(tmp_path, monkeypatch, no_mnist_anywhere):
    bad_dir = write_idx_dir(tmp_path / "bad")
    raw = (bad_dir / "train-labels-idx1-ubyte").read_bytes()
    (bad_dir / "train-labels-idx1-ubyte").write_bytes(raw[:-1])
    monkeypatch.setenv(data.DATA_ENV_VAR, str(write_idx_dir(tmp_path / "good")))
    with pytest.raises(DataFileError, match=r"bad/train-labels-idx1-ubyte: header says shape \(10012,\)"):
        load_dataset("mnist", data_dir=bad_dir)


def test_mnist_nowhere_is_one_error_listing_every_place(tmp_path, monkeypatch, no_mnist_anywhere):
    half = tmp_path / "half"
    half.mkdir()
    (half / "train-images-idx3-ubyte.gz").write_bytes(b"")
    monkeypatch.setenv(data.DATA_ENV_VAR, str(half))
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "1. `data_dir` argument: not given" in message
    assert (
        f"2. ${data.DATA_ENV_VAR} {half}: has train-images-idx3-ubyte.gz but no train-labels-idx1-ubyte[.gz]" in message
    )
    keras_cache = tmp_path / "keras_home" / "datasets"
    assert f"3. Keras' cache {keras_cache}: no such directory" in message
    assert "4. TensorFlow Datasets ('mnist'): " in message
    assert "pass it as `data_dir` or set $KERAS_INITLAB_DATA" in message and "'mnist-10k'" in message
    assert elapsed < 20, f"giving up took {elapsed:.1f}s"


def test_mnist_nowhere_without_tfds_installed(tmp_path, monkeypatch, no_mnist_anywhere):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "nothing-here"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "1. `data_dir` argument: not given" in message
    assert f"2. ${data.DATA_ENV_VAR} {tmp_path / 'nothing-here'}: no such directory" in message
    assert "4. TensorFlow Datasets ('mnist'): ImportError: " in message and "not installed" in message


# ---------------------------------------------------------------- corrupt files


def test_bundled_name_with_one_flipped_byte_fails_checksum(tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        copy = tmp_path / name
        shutil.copy(BUNDLED / name, copy)
        read_idx(copy)  # the intact copy reads
        raw = bytearray(copy.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        copy.write_bytes(bytes(raw))
        with pytest.raises(DataFileError, match=rf"{name}: md5 checksum mismatch"):
            read_idx(copy)


def test_bundled_file_corrupted_in_place_stops_mnist_10k(tmp_path, monkeypatch):
    fake = tmp_path / "data_files"
    fake.mkdir()
    shutil.copy(BUNDLED / "t10k-images-idx3-ubyte.gz", fake)
    (fake / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(10000, np.uint8))))
    monkeypatch.setattr(data.mnist, "BUNDLED_DIR", fake)
    with pytest.raises(DataFileError, match=r"t10k-labels-idx1-ubyte\.gz: md5 checksum mismatch"):
        load_dataset("mnist-10k")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", r"bad IDX magic number \(empty file\)"),
        (b"\x00\x00\x08\x03" + b"\x00" * 8, r"truncated header"),
        (
            idx_bytes(np.zeros((2, 3), np.uint8)).replace(b"\x00\x00\x08", b"\x00\x00\x0d", 1),
            r"bad IDX magic number 00 00 0d 02",
        ),
        (b"\x08\x03\x00\x00" + b"\x00" * 100, r"bad IDX magic number 08 03 00 00"),
        (
            idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-5],
            r"header says shape \(4, 28, 28\) \(3136 bytes.*3131 bytes",
        ),
        (
            idx_bytes(np.zeros((4, 28, 28), np.uint8)) + b"\x00",
            r"header says shape \(4, 28, 28\) \(3136 bytes.*3137 bytes of data \(truncated or",
        ),
    ],
    ids=["empty", "short-header", "float-type-code", "bad-magic", "truncated", "padded"],
)
def test_corrupt_idx_structure_is_an_error_naming_the_file(tmp_path, content, match):
    path = tmp_path / "some-idx-file"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=rf"some-idx-file: {match}"):
        read_idx(path)


def test_truncated_gz_is_an_error(tmp_path):
    path = tmp_path / "mine-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))[:-10])
    with pytest.raises(DataFileError, match=r"mine-idx1-ubyte\.gz: not valid gzip data"):
        read_idx(path)


def write_pair(directory: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    directory.mkdir()
    (directory / "train-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (directory / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return directory


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("count", r"10012 images but 10011 labels"),
        ("label", r"label 10 outside 0\.\.9"),
        ("size", r"images are uint8 \(10012, 28, 27\), expected uint8 \(n, 28, 28\)"),
        ("labels-2d", r"labels are uint8 \(10012, 1\), expected uint8 \(n,\)"),
        ("few", r"holds 10000 training images; the 'mnist' split needs more than 10000"),
    ],
)
def test_valid_idx_that_is_not_mnist_is_an_error(tmp_path, no_mnist_anywhere, case, match):
    images, labels = tiny_mnist()
    if case == "count":
        labels = labels[:-1]
    elif case == "label":
        labels[5] = 10
    elif case == "size":
        images = images[:, :, :27]
    elif case == "labels-2d":
        labels = labels[:, None]
    elif case == "few":
        images, labels = images[:10_000], labels[:10_000]
    directory = write_pair(tmp_path / "idx", images, labels)
    with pytest.raises(DataFileError, match=match) as info:
        load_dataset("mnist", data_dir=directory)
    assert str(directory) in str(info.value)


def test_npz_with_wrong_contents_is_an_error(tmp_path, monkeypatch, no_mnist_anywhere):
    directory = tmp_path / "npz"
    directory.mkdir()
    npz = directory / "mnist.npz"
    np.savez(npz, x_train=np.zeros((10_012, 28, 28), np.float64), y_train=np.zeros(10_012, np.uint8))
    register(monkeypatch, npz, "sha256")
    with pytest.raises(DataFileError, match=r"mnist\.npz: not MNIST: images are float64"):
        load_dataset("mnist", data_dir=directory)
    np.savez(npz, x_train=np.zeros((10_012, 28, 28), np.uint8))
    register(monkeypatch, npz, "sha256")
    with pytest.raises(DataFileError, match=r"mnist\.npz: needs arrays x_train and y_train, holds \['x_train'\]"):
        load_dataset("mnist", data_dir=directory)
    npz.write_bytes(b"not a zip file")
    register(monkeypatch, npz, "sha256")
    with pytest.raises(DataFileError, match=r"mnist\.npz: not a readable \.npz file"):
        load_dataset("mnist", data_dir=directory)


# ---------------------------------------------------------------- bad names and arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": 3}, TypeError, r"`name` must be a str. Received: name=3"),
        ({"name": None}, TypeError, r"name=None"),
        ({"name": "mnist", "data_dir": 5}, TypeError, r"`data_dir` must be a path.*data_dir=5"),
        (
            {"name": "mnist-10k", "data_dir": "/tmp"},
            ValueError,
            r"takes no `data_dir`.*data_dir='/tmp'",
        ),
        (
            {"name": ""},
            ValueError,
            r"'mnist-10k', 'mnist', 'keras:NAME' or a TensorFlow Datasets name. Received: name=''",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_dataset(**kwargs)


def test_unknown_name_without_tfds_says_what_is_built_in(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"'mnist_10k' comes from TensorFlow Datasets.*'mnist-10k', 'mnist'"):
        load_dataset("mnist_10k")


# ---------------------------------------------------------------- other TFDS datasets (no network)


def test_unknown_tfds_name_is_a_value_error():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match=r"Unknown dataset name: 'no_such_dataset_xyz'.*'fashion_mnist'"):
        load_dataset("no_such_dataset_xyz")
    with pytest.raises(ValueError) as info:  # a long name is shown in at most 80 characters
        load_dataset("z" * 5000)
    assert "'" + "z" * 79 + "... (5002 characters)" in str(info.value)
    assert not re.search("z{81}", str(info.value))


def test_tfds_dataset_that_is_not_image_classification_is_refused():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match=r"'imdb_reviews' is not an image-classification dataset"):
        load_dataset("imdb_reviews")


def test_tfds_dataset_last_sixth_validates(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=60, data_dir=str(tmp_path)):  # random examples, no download
        ds = load_dataset("fashion_mnist", data_dir=tmp_path)
        batch = next(
            iter(
                tfds.as_numpy(
                    tfds.builder("fashion_mnist", data_dir=str(tmp_path)).as_dataset(
                        split="train", as_supervised=True, batch_size=60
                    )
                )
            )
        )
    assert (ds.name, ds.source, ds.num_classes) == ("fashion_mnist", "tfds:fashion_mnist", 10)
    assert ds.x_train.shape == (50, 28, 28, 1) and ds.x_val.shape == (10, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.x_val, batch[0][50:] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, batch[1][:50])
    assert ds.checksum.startswith("md5:") and len(ds.checksum) == 4 + 32


def test_mnist_without_local_files_says_it_goes_to_the_network_first(tmp_path, monkeypatch, caplog):
    import tensorflow_datasets as tfds

    from keras_initlab.data import DatasetNotFoundError, load_dataset

    events = []

    def offline(self, *args, **kwargs):  # TFDS's download, as it ends on a machine without network access
        events.append(("download", [r.getMessage() for r in caplog.records]))
        raise OSError("network is unreachable")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: False)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("KERAS_INITLAB_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match="TensorFlow Datasets .*network is unreachable"):
        load_dataset("mnist")
    ((_, said_before),) = events
    assert any("downloads it now; this needs network access" in m for m in said_before), said_before


# ---------------------------------------------------------------- your own data: arrays, .npz, Keras' cache


def digits():
    """scikit-learn's digits (1,797 real 8x8 images of 10 classes, shipped in its wheel): ``(x, y)``, pixels 0..1."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16).astype(np.float32), bunch.target


def test_arrays_become_a_dataset_of_images_or_vectors_named_by_their_content():
    from sklearn.datasets import load_wine

    x, y = digits()
    images = Dataset.from_arrays(x[:1500], y[:1500], x[1500:], y[1500:], name="digits")
    assert (images.image_shape, images.n_train, images.n_val, images.num_classes) == ((8, 8, 1), 1500, 297, 10)
    assert images.x_train.dtype == np.float32 and images.y_train.dtype == np.int32 and images.source == "arrays"
    np.testing.assert_array_equal(images.x_train[..., 0], x[:1500])
    wine = load_wine()
    vectors = Dataset.from_arrays(wine.data[:150], wine.target[:150], wine.data[150:], wine.target[150:, None])
    assert (vectors.image_shape, vectors.num_classes, vectors.name) == ((13,), 3, "arrays")
    assert vectors.y_val.shape == (28,)  # a (n, 1) column of labels, as CIFAR's, flattened
    # The checksum is the content: the same arrays however given, another as soon as one value differs.
    again = Dataset.from_arrays(list(x[:1500]), y[:1500].astype(np.uint8), x[1500:], y[1500:], name="digits")
    assert again.checksum == images.checksum and images.checksum.startswith("md5:")
    changed = y[1500:].copy()
    changed[0] = (changed[0] + 1) % 10
    assert Dataset.from_arrays(x[:1500], y[:1500], x[1500:], changed).checksum != images.checksum
    pixels = (x * 255).round().astype(np.uint8)  # uint8 arrays are pixels: scaled to [0, 1]
    scaled = Dataset.from_arrays(pixels[:10], y[:10], pixels[10:20], y[10:20])
    np.testing.assert_array_equal(scaled.x_train[..., 0], pixels[:10].astype(np.float32) / np.float32(255))


GOOD = (np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1]), np.zeros((2, 3), np.float32), np.array([1, 0]))


@pytest.mark.parametrize(
    "position, value, kwargs, error, message",
    [
        (
            0,
            np.array([[0, 1, np.nan]] * 4, np.float32),
            {},
            ValueError,
            r"x_train\[0, 2\] is nan; features must be finite",
        ),
        (2, np.full((2, 3), np.inf, np.float32), {}, ValueError, r"x_val\[0, 0\] is inf"),
        (
            0,
            np.zeros((4, 3), np.int16),
            {},
            TypeError,
            r"`x_train` must be an array of uint8 pixels or of floating-point",
        ),
        (1, np.array([0.0, 1, 0, 1]), {}, TypeError, r"`y_train` must be an array of integer class labels"),
        (3, np.array([1, -1]), {}, ValueError, r"y_val holds the label -1; labels are class indices"),
        (
            1,
            np.array([0, 1, 0]),
            {},
            ValueError,
            r"y_train must hold one label per example, shape \(4,\); got shape \(3,\)",
        ),
        (2, np.zeros((2, 4), np.float32), {}, ValueError, r"x_train's are \(3,\), x_val's \(4,\)"),
        (0, np.zeros((0, 3), np.float32), {}, ValueError, r"`x_train` must be examples .* with n >= 1"),
        (
            0,
            np.zeros(4, np.float32),
            {},
            ValueError,
            r"`x_train` must be examples \(n, F\), \(n, H, W\) or \(n, H, W, C\)",
        ),
        (3, np.array([1, 0]), {"num_classes": 1}, ValueError, r"label 1 is not below num_classes=1"),
        (3, np.array([1, 0]), {"name": ""}, ValueError, r"`name` must be a dataset name of 1 to 100 characters"),
    ],
)
def test_arrays_that_are_not_examples_and_labels_are_refused_naming_the_array(position, value, kwargs, error, message):
    arrays = list(GOOD)
    arrays[position] = value
    with pytest.raises(error, match=message):
        Dataset.from_arrays(*arrays, **kwargs)


def test_an_npz_in_keras_layout_is_a_dataset_and_anything_else_is_said(tmp_path):
    x, y = digits()
    np.savez(tmp_path / "digits.npz", x_train=x[:1500], y_train=y[:1500], x_test=x[1500:], y_test=y[1500:])
    np.savez(tmp_path / "val.npz", x_train=x[:1500], y_train=y[:1500], x_val=x[1500:], y_val=y[1500:])
    from_file = Dataset.from_npz(tmp_path / "digits.npz")
    arrays = Dataset.from_arrays(x[:1500], y[:1500], x[1500:], y[1500:], name="digits")
    assert (from_file.name, from_file.source, from_file.checksum) == (
        "digits",
        str(tmp_path / "digits.npz"),
        arrays.checksum,
    )
    assert Dataset.from_npz(tmp_path / "val.npz", name="digits").checksum == arrays.checksum
    np.savez(tmp_path / "half.npz", x_train=x, y_train=y)
    with pytest.raises(
        DataFileError,
        match=r"half.npz: needs arrays x_train, y_train and x_val, y_val \(or x_test, "
        r"y_test\); holds x_train, y_train",
    ):
        Dataset.from_npz(tmp_path / "half.npz")
    np.savez(
        tmp_path / "objects.npz",
        x_train=np.array([{"a": 1}] * 3, dtype=object),
        y_train=y[:3],
        x_val=x[:1],
        y_val=y[:1],
    )
    with pytest.raises(DataFileError, match=r"objects.npz: not a readable .npz file .*allow_pickle"):
        Dataset.from_npz(tmp_path / "objects.npz")  # never unpickled
    np.savez(tmp_path / "nan.npz", x_train=np.full((3, 2), np.nan), y_train=y[:3], x_val=x[:1, 0], y_val=y[:1])
    with pytest.raises(ValueError, match=r"nan.npz: x_train\[0, 0\] is nan"):
        Dataset.from_npz(tmp_path / "nan.npz")
    with pytest.raises(FileNotFoundError, match="no such .npz file"):
        Dataset.from_npz(tmp_path / "missing.npz")


def test_keras_data_sets_come_from_keras_cache_or_fail_at_once_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cache = tmp_path / "datasets" / "fashion-mnist"  # the files keras.datasets.fashion_mnist keeps (IDX, gzipped)
    cache.mkdir(parents=True)
    for split, source in (("train", "t10k"), ("t10k", "t10k")):  # MNIST's real test files, in that layout
        for kind in ("labels-idx1", "images-idx3"):
            shutil.copy(BUNDLED / f"{source}-{kind}-ubyte.gz", cache / f"{split}-{kind}-ubyte.gz")
    ds = load_dataset("keras:fashion_mnist")
    assert (ds.name, ds.source, ds.image_shape, ds.n_train, ds.n_val) == (
        "keras:fashion_mnist",
        "keras:fashion_mnist",
        (28, 28, 1),
        10_000,
        10_000,
    )
    np.testing.assert_array_equal(ds.y_train, read_idx(BUNDLED / "t10k-labels-idx1-ubyte.gz"))
    start = time.perf_counter()
    with pytest.raises(
        DatasetNotFoundError,
        match=rf"keras:cifar10: Keras' cache has no {tmp_path}/datasets/"
        r"cifar-10-batches-py-target_archive; fetch it once",
    ):
        load_dataset("keras:cifar10")
    assert time.perf_counter() - start < 5  # no download tried
    with pytest.raises(ValueError, match=r"Unknown Keras data set 'imagenet'; Keras' data sets: keras:mnist, "):
        load_dataset("keras:imagenet")
    with pytest.raises(ValueError, match=r"takes no `data_dir`"):
        load_dataset("keras:mnist", data_dir=tmp_path)
