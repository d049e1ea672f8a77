"""Datasets: the bundled MNIST sample, local MNIST files, and TensorFlow Datasets.

`load_dataset(name)` returns a `Dataset`: images as float32 `(n, H, W, C)` scaled to
[0, 1], labels as int32, split into training and validation parts by a fixed rule.

| name          | where from                                 | validation                   |
| ------------- | ------------------------------------------ | ---------------------------- |
| `"mnist-10k"` | bundled with the package (MNIST test set)  | indices `i % 5 == 4` (2,000) |
| `"mnist"`     | local IDX files or `mnist.npz`, else TFDS  | last 10,000 training images  |
| other names   | TensorFlow Datasets, its `train` split     | last `n // 6` examples       |

Both parts keep the source order; shuffling is the training loop's job. The `"mnist"`
split is Nielsen's (50,000 / 10,000); the MNIST test files are not read. The rule for
other names gives the same 50,000 / 10,000 on 60,000-image sets such as `fashion_mnist`.

Files are verified before use: files whose names are in `KNOWN_CHECKSUMS` (the official
MNIST `.gz` files, the bundled ones among them, and Keras' `mnist.npz`) must match their
digest, and every IDX file must have the right magic number, dimensions and size. A bad
file raises `DataFileError`; it is never skipped or used.

Example:

>>> ds = load_dataset()
>>> ds.x_train.shape, ds.x_val.shape, ds.num_classes
((8000, 28, 28, 1), (2000, 28, 28, 1), 10)
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from keras_initlab.checks import check_int, check_str, fail, shown

_log = logging.getLogger(__name__)

__all__ = [
    "DATA_ENV_VAR",
    "KNOWN_CHECKSUMS",
    "DataFileError",
    "Dataset",
    "DatasetNotFoundError",
    "load_dataset",
    "read_idx",
]

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

_BUNDLED_DIR = Path(__file__).parent / "data_files"
_TRAIN_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_MNIST_IMAGE_SIZE = (28, 28)
_MNIST_NUM_CLASSES = 10
_MNIST_VAL_SIZE = 10_000
_IDX_UBYTE = 0x08
_MNIST_FILES = f"{_TRAIN_STEMS[0]}.gz and {_TRAIN_STEMS[1]}.gz (or uncompressed) or Keras' mnist.npz"
"""What a directory of the full MNIST holds."""


class DataFileError(ValueError):
    """A data file is corrupt, truncated, or does not hold what its name says."""


class DatasetNotFoundError(FileNotFoundError):
    """None of the places looked at holds the dataset; the message lists them all."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels, split into a training and a validation part.

    Example:

    >>> ds = load_dataset("mnist-10k")
    >>> ds.image_shape, ds.n_train, ds.n_val
    ((28, 28, 1), 8000, 2000)
    >>> small = ds.subset(100, 50)
    >>> small.x_train.shape, small.name
    ((100, 28, 28, 1), 'mnist-10k[:100,:50]')

    Args:
        name: the dataset's name (`load_dataset`'s argument, plus any `subset` suffix).
        x_train, x_val: float32 images `(n, H, W, C)`, pixels in [0, 1].
        y_train, y_val: int32 class labels in `[0, num_classes)`.
        num_classes: number of classes.
        source: where the data came from: a file or directory path, or `"tfds:NAME"`.
        checksum: digest identifying the data: `"md5:"` + the MD5 of each file read,
            joined by `"+"`; for TFDS, the MD5 of the decoded train-split arrays.
    """

    name: str
    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_val: np.ndarray = dataclasses.field(repr=False)
    y_val: np.ndarray = dataclasses.field(repr=False)
    num_classes: int
    source: str
    checksum: str

    @property
    def image_shape(self) -> tuple[int, ...]:
        """`(H, W, C)` of one image."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return len(self.x_train)

    @property
    def n_val(self) -> int:
        """Number of validation examples."""
        return len(self.x_val)

    def subset(self, n_train: int, n_val: int) -> Dataset:
        """The first `n_train` training and first `n_val` validation examples.

        The name and checksum get the suffix `[:n_train,:n_val]`.
        """
        for arg, value, available in (
            ("n_train", n_train, self.n_train),
            ("n_val", n_val, self.n_val),
        ):
            check_int(value, arg, minimum=1, maximum=available)
        suffix = f"[:{n_train},:{n_val}]"
        return dataclasses.replace(
            self,
            name=self.name + suffix,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_val=self.x_val[:n_val],
            y_val=self.y_val[:n_val],
            checksum=self.checksum + suffix,
        )


def load_dataset(name: str = "mnist-10k", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name, verified and split into training and validation parts.

    Names:
        `"mnist-10k"`: the real MNIST test set (10,000 images), bundled with the package;
            works offline. Validation = indices `i % 5 == 4` (2,000), training = the rest.
            `data_dir` must be None.
        `"mnist"`: the 60,000 MNIST training images; validation = the last 10,000.
            Read from `data_dir` alone when it is given (without the files: an error at once).
            Else looked for in `$KERAS_INITLAB_DATA`, in Keras' cache (`$KERAS_HOME/datasets`,
            default `~/.keras/datasets`), then through TensorFlow Datasets, which downloads
            when the network allows. A directory holds `train-images-idx3-ubyte` and
            `train-labels-idx1-ubyte` (`.gz` or not) or Keras' `mnist.npz`. TFDS's MNIST is
            in its own order (its last 10,000 differ; the checksum tells them apart).
        Any other name: a TensorFlow Datasets image-classification dataset with
            fixed-size uint8 images (e.g. `"fashion_mnist"`), loaded whole into memory
            from its `train` split; validation = the last `n // 6` examples. `data_dir`
            is TFDS's data directory (None: TFDS's default).

    Offline, TFDS retries a download for minutes (about 200 s for MNIST) before it gives up.
    Examples:

    >>> ds = load_dataset()  # "mnist-10k"
    >>> ds.n_train, ds.n_val, ds.x_train.dtype, ds.y_train.dtype
    (8000, 2000, dtype('float32'), dtype('int32'))

    `load_dataset("mnist", data_dir="~/data/mnist")` reads the full set from local files.

    Args:
        name: `"mnist-10k"`, `"mnist"`, or a TFDS dataset name.
        data_dir: for `"mnist"`, the directory of its files; for a TFDS name, TFDS's data
            directory (see above).

    Returns:
        A `Dataset`.

    Raises:
        DataFileError: a file found is corrupt or not what its name says.
        DatasetNotFoundError: `"mnist"` is not in `data_dir`, or (without it) nowhere; the message
            names each place tried and what it must hold.
        ValueError, TypeError: an unknown name or a bad argument.
    """
    check_str(name, "name")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        fail(TypeError, "data_dir", "a path (str or os.PathLike) or None", data_dir)
    if name == "mnist-10k":
        if data_dir is not None:
            raise ValueError(
                f"'mnist-10k' is bundled with the package and takes no `data_dir`. "
                f"Received: data_dir={shown(data_dir)}"
            )
        return _load_bundled()
    if name == "mnist":
        return _load_mnist(data_dir)
    if not name:
        raise ValueError(
            "Argument `name` must be 'mnist-10k', 'mnist' or a TensorFlow Datasets name. "
            "Received: name=''"
        )
    return _load_tfds(name, data_dir)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file of unsigned bytes (`.gz` or not), as MNIST ships them.

    Checks the file's digest if `KNOWN_CHECKSUMS` lists its name, then the IDX
    structure: magic number `0x00 0x00 0x08 ndim`, big-endian dimensions, and a payload
    of exactly their product in bytes.

    Example:

    >>> labels = read_idx(_BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz")
    >>> labels.shape, labels.dtype, labels[:5].tolist()
    ((10000,), dtype('uint8'), [7, 2, 1, 0, 4])

    Returns:
        A read-only uint8 array shaped as the header says.

    Raises:
        DataFileError: checksum mismatch, bad gzip data, bad magic, or wrong size.
    """
    return _read_idx(Path(path))[0]


def _read_idx(path: Path) -> tuple[np.ndarray, str]:
    """`read_idx`, also returning the MD5 of the file as stored."""
    data, md5 = _read_verified(path)
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
        raise DataFileError(
            f"{path}: truncated header ({len(data)} bytes, {ndim} dimensions need {header_size})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    payload = len(data) - header_size
    if payload != int(np.prod(dims)):
        raise DataFileError(
            f"{path}: header says shape {dims} ({int(np.prod(dims))} bytes of data), "
            f"but the file holds {payload} bytes of data (truncated or padded)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims), md5


def _read_verified(path: Path) -> tuple[bytes, str]:
    """The bytes of `path` and their MD5, after checking the digest known for its name."""
    data = path.read_bytes()
    if path.name in KNOWN_CHECKSUMS:
        algorithm, expected = KNOWN_CHECKSUMS[path.name]
        actual = hashlib.new(algorithm, data).hexdigest()
        if actual != expected:
            raise DataFileError(
                f"{path}: {algorithm} checksum mismatch: expected {expected}, got {actual}. "
                f"The file is corrupt or not the official one; replace it with a fresh copy."
            )
    return data, hashlib.md5(data).hexdigest()


def _load_bundled() -> Dataset:
    images, images_md5 = _read_idx(_BUNDLED_DIR / "t10k-images-idx3-ubyte.gz")
    labels, labels_md5 = _read_idx(_BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz")
    is_val = np.arange(len(labels)) % 5 == 4
    return _make_dataset(
        "mnist-10k",
        images[..., None],
        labels,
        is_val,
        _MNIST_NUM_CLASSES,
        source=str(_BUNDLED_DIR),
        checksum=f"md5:{images_md5}+{labels_md5}",
    )


class _NotHere(Exception):
    """A place holds no copy of the dataset; the message says why."""


def _load_mnist(data_dir: str | os.PathLike | None) -> Dataset:
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
    for label, directory in places:
        if directory is None:
            tried.append(f"{label}: not given")
            continue
        directory = Path(directory).expanduser()
        try:
            return _load_mnist_dir(directory)
        except _NotHere as exc:
            tried.append(f"{label} {directory}: {exc}")
    try:
        return _load_tfds("mnist", None)
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
        next((p for p in (directory / f"{stem}.gz", directory / stem) if p.is_file()), None)
        for stem in _TRAIN_STEMS
    )
    if images_path and labels_path:
        images, images_md5 = _read_idx(images_path)
        labels, labels_md5 = _read_idx(labels_path)
        _check_mnist_arrays(images, labels, f"{images_path} + {labels_path.name}")
        return _mnist_dataset(images, labels, str(directory), f"md5:{images_md5}+{labels_md5}")
    npz_path = directory / "mnist.npz"
    if npz_path.is_file():
        return _load_mnist_npz(npz_path)
    if images_path or labels_path:
        present, missing = (
            (images_path, _TRAIN_STEMS[1]) if images_path else (labels_path, _TRAIN_STEMS[0])
        )
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
    return _make_dataset(
        "mnist", images[..., None], labels, is_val, _MNIST_NUM_CLASSES, source, checksum
    )


def _load_tfds(name: str, data_dir: str | os.PathLike | None) -> Dataset:
    """A TFDS image-classification dataset's train split; the last n // 6 validate."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:
        raise ImportError(
            f"Dataset {shown(name)} comes from TensorFlow Datasets, which is not installed "
            f"(pip install tensorflow-datasets). Built-in names: 'mnist-10k', 'mnist'."
        ) from exc
    try:
        builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    except ValueError as exc:  # tfds' DatasetNotFoundError and bad config names
        first_line = str(exc).splitlines()[0]
        raise ValueError(
            f"Unknown dataset name: {shown(name)} (TensorFlow Datasets: {shown(first_line)}). "
            f"Allowed: 'mnist-10k', 'mnist', or a TensorFlow Datasets image-classification name "
            f"such as 'fashion_mnist'."
        ) from None
    features, keys = builder.info.features, builder.info.supervised_keys
    image, label = (
        (features[keys[0]], features[keys[1]]) if keys and len(keys) == 2 else (None, None)
    )
    if not (
        isinstance(image, tfds.features.Image)
        and isinstance(label, tfds.features.ClassLabel)
        and None not in image.shape
        and image.np_dtype == np.uint8
    ):
        raise ValueError(
            f"Dataset {shown(name)} is not an image-classification dataset with fixed-size uint8 "
            f"images (supervised keys {keys}); only such TFDS datasets can be loaded."
        )
    if not builder.is_prepared():  # say so before TFDS goes to the network, which can take minutes
        _log.warning(
            "%r: TensorFlow Datasets has no prepared copy in %s and downloads it now; this needs network "
            "access and can take minutes offline before it fails. Local files work without it "
            "(see keras_initlab.load_dataset: data_dir, $%s).", name, builder.data_dir, DATA_ENV_VAR,
        )
    builder.download_and_prepare()
    batches = tfds.as_numpy(
        builder.as_dataset(split="train", as_supervised=True, batch_size=10_000)
    )
    images, labels = (np.concatenate(part) for part in zip(*batches, strict=True))
    n_val = len(images) // 6
    if n_val == 0:
        raise ValueError(
            f"Dataset {shown(name)} has {len(images)} training examples; at least 6 are needed"
        )
    checksum = hashlib.md5(np.ascontiguousarray(images).data)
    checksum.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    is_val = np.arange(len(images)) >= len(images) - n_val
    return _make_dataset(
        name,
        images,
        labels,
        is_val,
        label.num_classes,
        f"tfds:{name}",
        f"md5:{checksum.hexdigest()}",
    )


def _make_dataset(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    is_val: np.ndarray,
    num_classes: int,
    source: str,
    checksum: str,
) -> Dataset:
    """Scale uint8 `(n, H, W, C)` images to float32 [0, 1] and split them by `is_val`."""

    def scaled(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        x /= 255.0
        return x

    return Dataset(
        name=name,
        x_train=scaled(images[~is_val]),
        y_train=labels[~is_val].astype(np.int32),
        x_val=scaled(images[is_val]),
        y_val=labels[is_val].astype(np.int32),
        num_classes=int(num_classes),
        source=source,
        checksum=checksum,
    )
