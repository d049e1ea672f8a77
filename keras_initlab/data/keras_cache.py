"""Keras' own data sets (``"keras:NAME"``, `KERAS_DATASETS`) read from Keras' cache, never downloaded here.

They are read from the files ``keras.datasets.NAME.load_data()`` keeps in ``$KERAS_HOME/datasets`` (default
``~/.keras/datasets``): MNIST's ``.npz`` and Fashion-MNIST's IDX files here, CIFAR's pickled batches by Keras' own
reader (which takes ``$KERAS_HOME`` as it was when Keras was imported). When it does not, `load_keras_dataset` fails
at once, naming the file and the command that fetches it with network access: a comparison never waits on a
download. The validation part is Keras' test split (``x_test, y_test``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from keras_initlab.data.dataset import Dataset, DatasetNotFoundError
from keras_initlab.data.mnist import read_idx

KERAS_DATASETS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist.npz",),
    "fashion_mnist": tuple(
        f"fashion-mnist/{stem}-ubyte.gz"
        for stem in ("train-labels-idx1", "train-images-idx3", "t10k-labels-idx1", "t10k-images-idx3")
    ),
    "cifar10": ("cifar-10-batches-py-target_archive",),
    "cifar100": ("cifar-100-python-target_archive",),
}
"""Name -> the files ``keras.datasets.NAME.load_data()`` keeps in Keras' cache (Keras 3's names)."""


def keras_cache() -> Path:
    """Keras' data-set cache: ``$KERAS_HOME/datasets``, default ``~/.keras/datasets``."""
    return Path(os.environ.get("KERAS_HOME") or Path("~") / ".keras").expanduser() / "datasets"


def load_keras_dataset(name: str) -> Dataset:
    """``keras.datasets.NAME.load_data()`` as a `Dataset` named ``keras:NAME``, from Keras' cache.

    Raises:
        ValueError: a name not in `KERAS_DATASETS`.
        DatasetNotFoundError: the cache lacks a file (named, with the command that fetches it).
    """
    if name not in KERAS_DATASETS:
        raise ValueError(
            f"Unknown Keras data set {name!r}; Keras' data sets: {', '.join(f'keras:{n}' for n in KERAS_DATASETS)}"
        )
    folder = keras_cache()
    missing = [folder / file for file in KERAS_DATASETS[name] if not (folder / file).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"keras:{name}: Keras' cache has no {missing[0]}; fetch it once with network access: "
            f'python -c "import keras; keras.datasets.{name}.load_data()" (or copy the file there)'
        )
    if name == "mnist":  # read here, as Keras reads them, from this process's $KERAS_HOME
        dataset = Dataset.from_npz(folder / "mnist.npz", name="keras:mnist")
    elif name == "fashion_mnist":
        labels, images, val_labels, val_images = (
            read_idx(folder / file, known_names=False)  # MNIST's file names
            for file in KERAS_DATASETS[name]
        )
        dataset = Dataset.from_arrays(images, labels, val_images, val_labels, name=f"keras:{name}")
    else:  # CIFAR: Keras' own reader (pickled batches in a tar archive)
        import keras

        (x_train, y_train), (x_val, y_val) = getattr(keras.datasets, name).load_data()
        dataset = Dataset.from_arrays(x_train, y_train, x_val, y_val, name=f"keras:{name}")
    return dataclasses.replace(dataset, source=f"keras:{name}")
