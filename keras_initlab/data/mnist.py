"""MNIST: the bundled sample (``"mnist-10k"``, the real MNIST test set) and the full training set from local
files (IDX, as MNIST ships them, or Keras' ``mnist.npz``), each file verified before use: files whose names are in
`KNOWN_CHECKSUMS` must match their digest, and every IDX file must have the right magic number, dimensions and
size. A bad file raises `DataFileError`; it is never skipped or used.

>>> labels = read_idx(BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz")
>>> labels[:5].tolist()
[7, 2, 1, 0, 4]
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from keras_initlab.checks import shown
from keras_initlab.data.dataset import DataFileError, Dataset, DatasetNotFoundError, make_dataset
from keras_initlab.data.tfds import load_tfds

DATA_ENV_VAR = "KERAS_INITLAB_DATA"
"""Environment variable naming a directory that holds the full MNIST files."""

KNOWN_CHECKSUMS: dict[str, tuple[str, str]] = {
    # The official MNIST distribution (yann.lecun.com/exdb/mnist), compressed files.
    "train-images-idx3-ubyte.gz": ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train-labels-idx1-ubyte.gz": ("md5", "d53e105ee54ea40749a09fcbcd1e9432"),
    "t10k-images-idx3-ubyte.gz": ("md5", "9fb629c4189551a2d022fa330f9573f3"),
    "t10k-labels-idx1-ubyte.gz": ("md5", "ec29112dd5afa0611ce80d1b7f02629c"),
    # Keras' copy, as `keras.datasets.mnist.load_data` checks it (keras/src/datasets/mnist.py).
    "mnist.npz": ("sha256", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
}
"""File name -> (hash algorithm, hex digest) for files of known content."""

BUNDLED_DIR = Path(__file__).parents[1] / "data_files"
"""The bundled MNIST test set's files."""
_TRAIN_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_MNIST_IMAGE_SIZE = (28, 28)
_MNIST_NUM_CLASSES = 10
_MNIST_VAL_SIZE = 10_000
_IDX_UBYTE = 0x08
_MNIST_FILES = f"{_TRAIN_STEMS[0]}.gz and {_TRAIN_STEMS[1]}.gz (or uncompressed) or Keras' mnist.npz"
"""What a directory of the full MNIST holds."""


def read_idx(path: str | os.PathLike, known_names: bool = True) -> np.ndarray:
    """Read one IDX file of unsigned bytes (`.gz` or not), as MNIST ships them.

    Checks the file's digest if `KNOWN_CHECKSUMS` lists its name (unless ``known_names`` is False: files of
    another data set under MNIST's names, as Fashion-MNIST's), then the IDX
    structure: magic number `0x00 0x00 0x08 ndim`, big-endian dimensions, and a payload
    of exactly their product in bytes.

    Example:

    >>> labels = read_idx(BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz")
    >>> labels.shape, labels.dtype, labels[:5].tolist()
    ((10000,), dtype('uint8'), [7, 2, 1, 0, 4])

    Returns:
        A read-only uint8 array shaped as the header says.

    Raises:
        DataFileError: checksum mismatch, bad gzip data, bad magic, or wrong size.
    """
    return _read_idx(Path(path), known_names)[0]


def _read_idx(path: Path, known_names: bool = True) -> tuple[np.ndarray, str]:
    """`read_idx`, also returning the MD5 of the file as stored."""
    data, md5 = _read_verified(path, known_names)
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFileError(f"{path}: not valid gzip data ({exc})") from exc
    if len(data) < 4 or data[:3] != bytes([0, 0, _IDX_UBYTE]):
        raise DataFileError(
            f"{path}: bad IDX magic number {data[:4].hex(' ') or '(empty file)'}; "
            f"expected 00 00 08 <ndim> (unsigned-byte IDX)"
        )
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFileError(f"{path}: truncated header ({len(data)} bytes, {ndim} dimensions need {header_size})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    payload = len(data) - header_size
    if payload != int(np.prod(dims)):
        raise DataFileError(
            f"{path}: header says shape {dims} ({int(np.prod(dims))} bytes of data), "
            f"but the file holds {payload} bytes of data (truncated or padded)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims), md5


def _read_verified(path: Path, known_names: bool = True) -> tuple[bytes, str]:
    """The bytes of `path` and their MD5, after checking the digest known for its name (with ``known_names``)."""
    data = path.read_bytes()
    if known_names and path.name in KNOWN_CHECKSUMS:
        algorithm, expected = KNOWN_CHECKSUMS[path.name]
        actual = hashlib.new(algorithm, data).hexdigest()
        if actual != expected:
            raise DataFileError(
                f"{path}: {algorithm} checksum mismatch: expected {expected}, got {actual}. "
                f"The file is corrupt or not the official one; replace it with a fresh copy."
            )
    return data, hashlib.md5(data).hexdigest()


def load_bundled() -> Dataset:
    images, images_md5 = _read_idx(BUNDLED_DIR / "t10k-images-idx3-ubyte.gz")
    labels, labels_md5 = _read_idx(BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz")
    is_val = np.arange(len(labels)) % 5 == 4
    return make_dataset(
        "mnist-10k",
        images[..., None],
        labels,
        is_val,
        _MNIST_NUM_CLASSES,
        source=str(BUNDLED_DIR),
        checksum=f"md5:{images_md5}+{labels_md5}",
    )


class _NotHere(Exception):
    """A place holds no copy of the dataset; the message says why."""


def load_mnist(data_dir: str | os.PathLike | None) -> Dataset:
    if data_dir is not None:  # the place the caller named: there or nowhere (no other copy, no download)
        directory = Path(data_dir).expanduser()
        try:
            return _load_mnist_dir(directory)
        except _NotHere as exc:
            raise DatasetNotFoundError(
                f"data_dir {shown(str(directory))}: {exc}; for 'mnist' it must hold {_MNIST_FILES}"
            ) from None
    env_dir = os.environ.get(DATA_ENV_VAR)
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    places = [
        (f"${DATA_ENV_VAR}", env_dir or None),
        ("Keras' cache", os.path.join(keras_home, "datasets")),
    ]
    tried = ["`data_dir` argument: not given"]
    for label, place in places:
        if place is None:
            tried.append(f"{label}: not given")
            continue
        directory = Path(place).expanduser()
        try:
            return _load_mnist_dir(directory)
        except _NotHere as exc:
            tried.append(f"{label} {directory}: {exc}")
    try:
        return load_tfds("mnist", None)
    except Exception as exc:  # any TFDS failure (not installed, offline, ...) is reported below
        reason = (str(exc).strip().splitlines() or [""])[0]
        tried.append(f"TensorFlow Datasets ('mnist'): {type(exc).__name__}: {reason}")
    listing = "\n".join(f"  {i}. {line}" for i, line in enumerate(tried, 1))
    raise DatasetNotFoundError(
        f"Dataset 'mnist' not found. Places tried, in order:\n{listing}\n"
        f"To provide it, put {_MNIST_FILES} in a directory and pass it as `data_dir` or set "
        f"${DATA_ENV_VAR} to it; or run keras.datasets.mnist.load_data() once with network "
        f"access. 'mnist-10k' ships with the package and needs no files."
    )


def _load_mnist_dir(directory: Path) -> Dataset:
    """MNIST from the IDX files (preferred) or `mnist.npz` in `directory`; `_NotHere` if none."""
    try:
        is_dir = directory.is_dir()
    except OSError as exc:  # a name too long, no permission
        raise _NotHere(f"cannot be read ({exc.strerror})") from None
    if not is_dir:
        raise _NotHere("not a directory" if directory.exists() else "no such directory")
    images_path, labels_path = (
        next((p for p in (directory / f"{stem}.gz", directory / stem) if p.is_file()), None) for stem in _TRAIN_STEMS
    )
    if images_path and labels_path:
        images, images_md5 = _read_idx(images_path)
        labels, labels_md5 = _read_idx(labels_path)
        _check_mnist_arrays(images, labels, f"{images_path} + {labels_path.name}")
        return _mnist_dataset(images, labels, str(directory), f"md5:{images_md5}+{labels_md5}")
    npz_path = directory / "mnist.npz"
    if npz_path.is_file():
        return _load_mnist_npz(npz_path)
    for present, missing in ((images_path, _TRAIN_STEMS[1]), (labels_path, _TRAIN_STEMS[0])):
        if present:  # one of the two
            raise _NotHere(f"has {present.name} but no {missing}[.gz]")
    raise _NotHere(f"no {_TRAIN_STEMS[0]}[.gz] + {_TRAIN_STEMS[1]}[.gz], no mnist.npz")


def _load_mnist_npz(path: Path) -> Dataset:
    data, md5 = _read_verified(path)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ("x_train", "y_train") if key in npz.files}
            files = npz.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"{path}: not a readable .npz file ({exc})") from exc
    if len(arrays) != 2:
        raise DataFileError(f"{path}: needs arrays x_train and y_train, holds {sorted(files)}")
    _check_mnist_arrays(arrays["x_train"], arrays["y_train"], str(path))
    return _mnist_dataset(arrays["x_train"], arrays["y_train"], str(path), f"md5:{md5}")


def _check_mnist_arrays(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    """Raise `DataFileError` unless these are uint8 MNIST images and matching labels."""
    problems = []
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != _MNIST_IMAGE_SIZE:
        problems.append(f"images are {images.dtype} {images.shape}, expected uint8 (n, 28, 28)")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        problems.append(f"labels are {labels.dtype} {labels.shape}, expected uint8 (n,)")
    elif len(labels) != len(images):
        problems.append(f"{len(images)} images but {len(labels)} labels")
    elif labels.size and labels.max() >= _MNIST_NUM_CLASSES:
        problems.append(f"label {int(labels.max())} outside 0..9")
    if problems:
        raise DataFileError(f"{where}: not MNIST: " + "; ".join(problems))


def _mnist_dataset(images: np.ndarray, labels: np.ndarray, source: str, checksum: str) -> Dataset:
    """Nielsen's split of the MNIST training images: the last 10,000 validate."""
    if len(images) <= _MNIST_VAL_SIZE:
        raise DataFileError(
            f"{source}: holds {len(images)} training images; the 'mnist' split needs more "
            f"than {_MNIST_VAL_SIZE} (validation = the last {_MNIST_VAL_SIZE})"
        )
    is_val = np.arange(len(images)) >= len(images) - _MNIST_VAL_SIZE
    return make_dataset("mnist", images[..., None], labels, is_val, _MNIST_NUM_CLASSES, source, checksum)
