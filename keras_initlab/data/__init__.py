"""Datasets: the bundled MNIST sample, local MNIST files, Keras' data sets, TensorFlow Datasets, and your own
arrays or ``.npz`` files.

`load_dataset(name)` returns a `Dataset`: examples as float32 (images `(n, H, W, C)` scaled to [0, 1], or
vectors `(n, F)`), labels as int32, split into training and validation parts by a fixed rule.

| name / source         | where from                                           | validation                   |
| --------------------- | ---------------------------------------------------- | ---------------------------- |
| `"mnist-10k"`         | bundled with the package (MNIST test set)            | indices `i % 5 == 4` (2,000) |
| `"mnist"`             | local IDX files or `mnist.npz`, else TFDS            | last 10,000 training images  |
| `"keras:NAME"`        | Keras' cache (`keras.datasets`; `KERAS_DATASETS`)   | Keras' test split            |
| other names           | TensorFlow Datasets, its `train` split               | last `n // 6` examples       |
| `Dataset.from_npz`    | an `.npz` in Keras' layout                           | `x_val, y_val` or `x_test, y_test` |
| `Dataset.from_arrays` | your arrays                                          | the arrays you give          |

Both parts keep the source order; shuffling is the training loop's job. The `"mnist"`
split is Nielsen's (50,000 / 10,000); the MNIST test files are not read. The rule for
other names gives the same 50,000 / 10,000 on 60,000-image sets such as `fashion_mnist`.
Nothing here downloads but TensorFlow Datasets (for `"mnist"` without local files, and other names).

Modules: `dataset` (the `Dataset` and its checks), `mnist` (IDX files, verified), `keras_cache`, `tfds`.

Example:

>>> ds = load_dataset()
>>> ds.x_train.shape, ds.x_val.shape, ds.num_classes
((8000, 28, 28, 1), (2000, 28, 28, 1), 10)
"""

from __future__ import annotations

import os

from keras_initlab.checks import check_str, fail, shown
from keras_initlab.data.dataset import DataFileError, Dataset, DatasetNotFoundError
from keras_initlab.data.keras_cache import KERAS_DATASETS, load_keras_dataset
from keras_initlab.data.mnist import DATA_ENV_VAR, KNOWN_CHECKSUMS, load_bundled, load_mnist, read_idx
from keras_initlab.data.tfds import load_tfds

__all__ = [
    "DATA_ENV_VAR",
    "KERAS_DATASETS",
    "KNOWN_CHECKSUMS",
    "DataFileError",
    "Dataset",
    "DatasetNotFoundError",
    "load_dataset",
    "read_idx",
]


def load_dataset(name: str = "mnist-10k", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name, verified and split into training and validation parts.

    Names:
        `"mnist-10k"`: the real MNIST test set (10,000 images), bundled with the package;
            works offline. Validation = indices `i % 5 == 4` (2,000), training = the rest.
            `data_dir` must be None.
        `"keras:NAME"`: a Keras data set (`KERAS_DATASETS`: mnist, fashion_mnist, cifar10,
            cifar100) that Keras' cache holds (`keras_initlab.data.keras_cache`); without its
            file, an error at once naming it. `data_dir` must be None.
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
        name: `"mnist-10k"`, `"mnist"`, `"keras:NAME"`, or a TFDS dataset name.
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
                f"'mnist-10k' is bundled with the package and takes no `data_dir`. Received: data_dir={shown(data_dir)}"
            )
        return load_bundled()
    if name.startswith("keras:"):
        if data_dir is not None:
            raise ValueError(
                f"{name!r} is read from Keras' cache ($KERAS_HOME/datasets) and takes no `data_dir`. "
                f"Received: data_dir={shown(data_dir)}"
            )
        return load_keras_dataset(name.removeprefix("keras:"))
    if name == "mnist":
        return load_mnist(data_dir)
    if not name:
        raise ValueError(
            "Argument `name` must be 'mnist-10k', 'mnist', 'keras:NAME' or a TensorFlow Datasets name. "
            "Received: name=''"
        )
    return load_tfds(name, data_dir)
