"""`Dataset`: examples and integer labels split into a training and a validation part, from any source: the
loaders of this package, a user's arrays (`Dataset.from_arrays`) or an ``.npz`` file in Keras' layout
(`Dataset.from_npz`).

Features are float32: ``uint8`` arrays are pixel values and are scaled to [0, 1], float arrays are kept as
they are; images ``(n, H, W)`` get a channel axis, ``(n, H, W, 1)``; vectors ``(n, F)`` stay vectors.
Labels are int32 class indices in ``[0, num_classes)``.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(120, 13)).astype("float32")
>>> y = np.arange(120) % 3
>>> ds = Dataset.from_arrays(x[:100], y[:100], x[100:], y[100:], name="tabular")
>>> ds.image_shape, ds.n_train, ds.n_val, ds.num_classes
((13,), 100, 20, 3)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from keras_initlab.checks import check_int, check_str, fail, shown

MAX_NAME_LENGTH = 100
"""Longest dataset name: it goes into params, run names and file names."""

NPZ_SPLITS = (("x_train", "y_train"), ("x_val", "y_val"), ("x_test", "y_test"))
"""The arrays an ``.npz`` holds: the training part, then the validation part as ``x_val, y_val`` or, as
``keras.datasets`` files hold it, ``x_test, y_test``."""


class DataFileError(ValueError):
    """A data file is corrupt, truncated, or does not hold what its name says."""


class DatasetNotFoundError(FileNotFoundError):
    """None of the places looked at holds the dataset; the message lists them all."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Examples and labels, split into a training and a validation part.

    Example:

    >>> from keras_initlab import load_dataset
    >>> ds = load_dataset("mnist-10k")
    >>> ds.image_shape, ds.n_train, ds.n_val
    ((28, 28, 1), 8000, 2000)
    >>> small = ds.subset(100, 50)
    >>> small.x_train.shape, small.name
    ((100, 28, 28, 1), 'mnist-10k[:100,:50]')

    Args:
        name: the dataset's name (`load_dataset`'s argument, plus any `subset` suffix).
        x_train, x_val: float32 examples, images `(n, H, W, C)` (pixels in [0, 1]) or vectors `(n, F)`.
        y_train, y_val: int32 class labels in `[0, num_classes)`.
        num_classes: number of classes.
        source: where the data came from: a file or directory path, `"tfds:NAME"`, `"keras:NAME"` or `"arrays"`.
        checksum: digest identifying the data: `"md5:"` + the MD5 of each file read, joined by `"+"`; for
            TFDS, Keras' data sets and arrays, the MD5 of the arrays as this class holds them.
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
        """The shape of one example: `(H, W, C)` of an image, `(F,)` of a vector."""
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

    @classmethod
    def from_arrays(
        cls,
        x_train,
        y_train,
        x_val,
        y_val,
        name: str = "arrays",
        num_classes: int | None = None,
    ) -> Dataset:
        """A `Dataset` of a user's arrays, checked.

        ``x``: numeric arrays of one shape per example, ``uint8`` (pixels, scaled to [0, 1]) or floating
        point (kept as float32); ``(n, H, W)`` images get a channel axis. ``y``: integer class labels,
        ``(n,)`` or ``(n, 1)``. ``num_classes`` defaults to the largest label + 1. The checksum is the MD5
        of the arrays as held (`Dataset.checksum`), the same however they were given.

        >>> import numpy as np
        >>> images = np.zeros((10, 8, 8), dtype="uint8")
        >>> ds = Dataset.from_arrays(images[:8], np.arange(8) % 2, images[8:], np.array([0, 1]), name="blank")
        >>> ds.x_train.shape, ds.x_train.dtype, ds.num_classes
        ((8, 8, 8, 1), dtype('float32'), 2)

        Raises:
            TypeError: an array of the wrong kind (features neither uint8 nor floating point, labels not
                integers), or a name that is not a str.
            ValueError: no examples, shapes that do not match (features and labels of a part, training and
                validation examples), NaN or infinite features, labels below 0 or not below ``num_classes``.
        """
        check_str(name, "name", "a dataset name")
        if not name.strip() or len(name) > MAX_NAME_LENGTH:
            fail(ValueError, "name", f"a dataset name of 1 to {MAX_NAME_LENGTH} characters", name)
        x_train, x_val = _features(x_train, "x_train"), _features(x_val, "x_val")
        y_train, y_val = _labels(y_train, "y_train", len(x_train)), _labels(y_val, "y_val", len(x_val))
        if x_train.shape[1:] != x_val.shape[1:]:
            raise ValueError(
                f"x_train and x_val must hold examples of one shape; x_train's are {x_train.shape[1:]}, "
                f"x_val's {x_val.shape[1:]}"
            )
        largest = int(max(y_train.max(), y_val.max()))
        if num_classes is None:
            num_classes = largest + 1
        elif check_int(num_classes, "num_classes", minimum=1) <= largest:
            raise ValueError(f"label {largest} is not below num_classes={num_classes}; labels are 0..num_classes-1")
        checksum = hashlib.md5()
        for array in (x_train, y_train, x_val, y_val):
            checksum.update(f"{array.dtype.str}{array.shape}".encode())
            checksum.update(np.ascontiguousarray(array).data)
        return cls(name, x_train, y_train, x_val, y_val, int(num_classes), "arrays", f"md5:{checksum.hexdigest()}")

    @classmethod
    def from_npz(cls, path: str | os.PathLike, name: str | None = None) -> Dataset:
        """The `Dataset` of an ``.npz`` file in Keras' layout: ``x_train, y_train`` and the validation part as
        ``x_val, y_val`` or ``x_test, y_test`` (as ``keras.datasets`` files hold it), checked as
        `from_arrays` checks arrays. ``name`` defaults to the file's name without ``.npz``; ``source`` is the
        file's path.

        Raises:
            DataFileError: the file is not a readable ``.npz`` (pickled object arrays included: never
                unpickled), or lacks the arrays (its message lists those it holds); or, naming the file, what
                `from_arrays` raises.
            FileNotFoundError: no such file.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{shown(str(path))}: no such .npz file")
        try:
            with np.load(path, allow_pickle=False) as npz:
                held = set(npz.files)
                splits = [split for split in NPZ_SPLITS if set(split) <= held]
                whole = len(splits) >= 2 and splits[0] == NPZ_SPLITS[0]
                arrays = [npz[key] for key in (*splits[0], *splits[1])] if whole else None
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:  # ValueError: an object array, not unpickled
            raise DataFileError(f"{path}: not a readable .npz file ({e})") from None
        if arrays is None:
            raise DataFileError(
                f"{path}: needs arrays x_train, y_train and x_val, y_val (or x_test, y_test); "
                f"holds {', '.join(sorted(held)) or 'none'}"
            )
        try:
            x_train, y_train, x_val, y_val = arrays
            dataset = cls.from_arrays(
                x_train, y_train, x_val, y_val, name=path.name.removesuffix(".npz") if name is None else name
            )
        except (TypeError, ValueError) as e:
            raise type(e)(f"{path}: {e}") from None
        return dataclasses.replace(dataset, source=str(path))


def _features(x, name: str) -> np.ndarray:
    """``x`` as float32 examples: uint8 scaled to [0, 1], images ``(n, H, W)`` given a channel axis."""
    x = np.asarray(x)
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        fail(TypeError, name, "an array of uint8 pixels or of floating-point features", f"an array of {x.dtype}")
    if x.ndim < 2 or x.ndim > 4 or 0 in x.shape:
        fail(ValueError, name, "examples (n, F), (n, H, W) or (n, H, W, C) with n >= 1", f"an array of shape {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255)
    else:
        x = x.astype(np.float32)
        finite = np.isfinite(x)
        if not finite.all():
            index = np.unravel_index(int(np.argmin(finite)), x.shape)
            raise ValueError(f"{name}{[int(i) for i in index]} is {x[index]}; features must be finite numbers")
    return x[..., None] if x.ndim == 3 else x


def _labels(y, name: str, n: int) -> np.ndarray:
    """``y`` as int32 labels ``(n,)`` (a ``(n, 1)`` column is flattened), each >= 0."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        fail(TypeError, name, "an array of integer class labels", f"an array of {y.dtype}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (n,):
        raise ValueError(f"{name} must hold one label per example, shape ({n},); got shape {y.shape}")
    if y.min() < 0 or y.max() > np.iinfo(np.int32).max:
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise ValueError(f"{name} holds the label {bad}; labels are class indices 0, 1, ...")
    return y.astype(np.int32)


def make_dataset(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    is_val: np.ndarray,
    num_classes: int,
    source: str,
    checksum: str,
) -> Dataset:
    """The `Dataset` of a loader's uint8 images ``(n, H, W, C)`` and labels, split by ``is_val``: pixels
    scaled to float32 [0, 1]."""

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
