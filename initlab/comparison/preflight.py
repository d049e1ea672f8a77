"""What is checked before any run of a comparison exists: the data loads (`load_spec_data`), the device
exists (`resolve_spec_device`), and the spec fits the data and the memory plan (`check_spec_fits`).

Each failure is a `initlab.spec.SpecError` naming the key, raised before anything is tracked.

>>> builder = check_spec_fits(spec, load_spec_data(spec), resolve_spec_device(spec))   # doctest: +SKIP
"""

from __future__ import annotations

import math

import keras
import numpy as np

from initlab.comparison.builder import ModelBuilder
from initlab.messages import one_line, shown, shown_text
from initlab.spec import ComparisonSpec, ConvNetModel, MLPModel, NpzFile, SpecError
from keras_initlab.data import Dataset, load_dataset
from keras_initlab.diagnostics import diagnosed_layers
from keras_initlab.models import FactoryError, as_model_input, factory_name
from keras_initlab.training import resolve_device
from keras_initlab.training.planning import memory_budget, mlp_bytes


def load_spec_data(spec: ComparisonSpec, data: Dataset | None = None) -> Dataset:
    """The spec's dataset (`keras_initlab.data.load_dataset`, or `keras_initlab.Dataset.from_npz` for
    ``{npz: PATH}``), or ``data`` when given, cut to ``subset`` when the spec has one.

    A dataset that cannot be loaded (unknown name, missing or corrupt files, arrays that are not
    examples and labels) or a subset larger than the data is a `SpecError` naming the key.
    """
    if data is None:
        try:
            if isinstance(spec.dataset, NpzFile):
                data = Dataset.from_npz(spec.dataset.path(spec.base_dir))
            else:
                data = load_dataset(spec.dataset, data_dir=spec.data_dir)
        except (ValueError, OSError, ImportError) as e:
            key, given = (
                ("dataset.npz", spec.dataset.npz) if isinstance(spec.dataset, NpzFile) else ("dataset", spec.dataset)
            )
            raise SpecError(f"{key}: {shown(given)} cannot be loaded: {one_line(e)}") from None
    if spec.subset is None:
        return data
    for key, wanted, available in zip(
        ("subset.train", "subset.val"), spec.subset, (data.n_train, data.n_val), strict=True
    ):
        if wanted > available:
            raise SpecError(f"{key}: {wanted} examples asked for, but {data.name} has {available}")
    return data.subset(*spec.subset)


def resolve_spec_device(spec: ComparisonSpec) -> str:
    """The TensorFlow device of ``spec.device``; a GPU asked for on a machine without one is a `SpecError`."""
    try:
        return resolve_device(spec.device)
    except RuntimeError as e:
        raise SpecError(f"device: {e}") from None


def check_spec_fits(spec: ComparisonSpec, data: Dataset, device_name: str) -> ModelBuilder:
    """Everything the spec, the data's shape and the memory plan allow to check, before any run exists;
    returns the spec's `ModelBuilder`.

    A batch must fit the training set. For the MLP the first size must be the
    number of values of an example and the last the number of classes, and one
    model (weights, gradients, activations and the data on the device,
    `mlp_bytes`) must fit the memory budget (`memory_budget`). Every scheme's
    model is built once, so initializers that do not fit their layers (e.g. a
    sparse initializer with more connections than a layer's fan-in) and a
    factory that fails or returns the wrong model fail here; a factory model's
    loss is computed on a few validation examples, and with the default loss its
    outputs must be class probabilities. Raises a `SpecError` naming the key.
    """
    if spec.batch_size > data.n_train:
        raise SpecError(f"batch_size: {spec.batch_size} is larger than the {data.n_train} training examples")
    if isinstance(spec.model, MLPModel):
        _check_mlp_fits(spec.model, spec.batch_size, data, device_name)
    if isinstance(spec.model, ConvNetModel) and len(data.image_shape) != 3:
        raise SpecError(
            f"model: the convnet takes images (H, W, C), but the examples of {data.name} have shape "
            f"{data.image_shape}; use the MLP (model: {{sizes: [{math.prod(data.image_shape)}, ...]}}) or a factory"
        )
    builder = ModelBuilder(spec, data)
    for i, scheme in enumerate(spec.schemes):
        try:
            model = builder.build(scheme, spec.seeds[0])
        except FactoryError as e:
            raise SpecError(f"model.factory: with scheme {scheme.name}: {e}") from None
        except (ValueError, TypeError) as e:
            raise SpecError(f"schemes[{i}] ({shown_text(scheme.name)}): {one_line(e)}") from None
        if builder.factory is not None and i == 0:
            _check_factory_outputs(spec, builder, model)
        if spec.watch and i == 0:
            try:
                diagnosed_layers(model)
            except ValueError as e:
                raise SpecError(f"watch: {one_line(e)}; or give watch: false") from None
    return builder


def _check_mlp_fits(model: MLPModel, batch_size: int, data: Dataset, device_name: str) -> None:
    pixels = math.prod(data.image_shape)
    if model.sizes[0] != pixels:
        raise SpecError(
            f"model.sizes[0]: {model.sizes[0]} inputs, but the examples of {data.name} have "
            f"{'x'.join(map(str, data.image_shape))} = {pixels} values; use {pixels}"
        )
    if model.sizes[-1] != data.num_classes:
        raise SpecError(
            f"model.sizes[-1]: {model.sizes[-1]} outputs, but {data.name} has {data.num_classes} classes; "
            f"use {data.num_classes}"
        )
    shared, per_model = mlp_bytes(list(model.sizes), data.n_train, data.n_val, batch_size)
    budget = memory_budget(device_name)
    if shared + per_model > budget:
        raise SpecError(
            f"model.sizes: one model needs about {per_model / 2**20:.0f} MiB and the data "
            f"{shared / 2**20:.0f} MiB, but {budget / 2**20:.0f} MiB may be used on {device_name}"
        )


FACTORY_CHECK_EXAMPLES = 8
"""How many validation examples a factory model's outputs and loss are checked on before any run."""


def _check_factory_outputs(spec: ComparisonSpec, builder: ModelBuilder, model: keras.Model) -> None:
    """The factory model's loss is finite on a few examples; with the default loss, its outputs are probabilities."""
    x, y = (a[:FACTORY_CHECK_EXAMPLES] for a in (builder.data.x_val, builder.data.y_val))
    name = factory_name(builder.factory)
    try:
        pred = keras.ops.convert_to_numpy(model(as_model_input(model, x), training=False))
        loss = float(np.mean(keras.ops.convert_to_numpy(builder.loss(model)(y, pred))))
    except Exception as e:
        where = "loss" if spec.loss is not None else "model.factory"
        raise SpecError(f"{where}: computing {name}'s loss on {len(x)} examples raised {one_line(e)}") from None
    if spec.loss is None:
        low, high, sums = float(pred.min()), float(pred.max()), pred.sum(axis=-1)
        if low < 0 or high > 1 or np.abs(sums - 1).max() > 1e-3:
            raise SpecError(
                f"model.factory: {name}'s outputs on {len(x)} validation images are not class probabilities "
                f"(values in [{low:.3g}, {high:.3g}], rows summing to {sums.min():.3g}..{sums.max():.3g}); "
                "end the model with a softmax, or give a loss that takes its outputs, e.g. "
                "loss: {class_name: SparseCategoricalCrossentropy, config: {from_logits: true}}"
            )
    if not math.isfinite(loss):
        raise SpecError(f"model.factory: {name}'s loss on {len(x)} validation images is {loss} before training")
