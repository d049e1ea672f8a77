"""Image-classification data sets of TensorFlow Datasets (`load_tfds`), loaded whole into memory from their
``train`` split; validation = the last ``n // 6`` examples (50,000 / 10,000 on 60,000-image sets such as
``fashion_mnist``). TFDS downloads what it has not prepared, when the network allows.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np

from keras_initlab.checks import shown
from keras_initlab.data.dataset import Dataset, make_dataset

_log = logging.getLogger(__name__)


def load_tfds(name: str, data_dir: str | os.PathLike | None) -> Dataset:
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
            f"Allowed: 'mnist-10k', 'mnist', 'keras:NAME' or a TensorFlow Datasets image-classification name "
            f"such as 'fashion_mnist'."
        ) from None
    features, keys = builder.info.features, builder.info.supervised_keys
    image, label = (features[keys[0]], features[keys[1]]) if keys and len(keys) == 2 else (None, None)
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
            "(see keras_initlab.load_dataset).",
            name,
            builder.data_dir,
        )
    builder.download_and_prepare()
    batches = tfds.as_numpy(builder.as_dataset(split="train", as_supervised=True, batch_size=10_000))
    images, labels = (np.concatenate(part) for part in zip(*batches, strict=True))
    n_val = len(images) // 6
    if n_val == 0:
        raise ValueError(f"Dataset {shown(name)} has {len(images)} training examples; at least 6 are needed")
    checksum = hashlib.md5(np.ascontiguousarray(images).data)
    checksum.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    is_val = np.arange(len(images)) >= len(images) - n_val
    return make_dataset(
        name,
        images,
        labels,
        is_val,
        label.num_classes,
        f"tfds:{name}",
        f"md5:{checksum.hexdigest()}",
    )
