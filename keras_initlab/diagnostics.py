"""Measured per-layer statistics of a model at initialization, beside the theory's prediction.

`diagnose` runs one batch through a model and reports, for every Dense and
Conv layer in depth order, the pre-activations ``z = W x + b`` (measured mean
and std, and the std `keras_initlab.theory.predicted_preactivation_std`
predicts from the second moment of the inputs that layer actually receives),
how many sigmoid/tanh units saturate, how many ReLU units are dead, how many
units are distinct (1 when the symmetry was never broken), and, given labels,
the norm of the loss gradient of each kernel.

>>> from keras_initlab import build_mlp, load_dataset
>>> data = load_dataset("mnist-10k")
>>> model = build_mlp([784, 30, 10], scheme="nielsen-large", seed=0)
>>> table = diagnose(model, data.x_val[:1000], data.y_val[:1000])
>>> table[0].name, table[0].fan_in, table[0].activation
('dense_1', 784, 'sigmoid')
>>> table[0].saturated_fraction > 0.3               # large weights saturate the sigmoids
True

The measurements work on any Keras backend; the gradient norms (given labels)
need TensorFlow. Figures of these tables are in `keras_initlab.plots`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_initlab.backend import require_tensorflow
from keras_initlab.initializers import compute_fans
from keras_initlab.models import activation_name, all_layers, as_model_input, default_loss
from keras_initlab.theory import predicted_preactivation_std

__all__ = [
    "DiagnosticsTable",
    "LayerDiagnostics",
    "LayerSignals",
    "collect_signals",
    "diagnose",
    "tabulate",
]

SIGMOID_SATURATION = (0.01, 0.99)
"""A sigmoid unit counts as saturated when its output is below the first or above the second value."""

TANH_SATURATION = 0.99
"""A tanh unit counts as saturated when ``|a|`` exceeds this value."""

DIAGNOSED_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
"""Layer classes (and subclasses) that `diagnose` reports on; other layers only pass signals through."""


def _is_diagnosed(layer) -> bool:
    # Conv*Transpose, depthwise and separable convolutions are not Conv*D subclasses in Keras 3.
    return isinstance(layer, DIAGNOSED_LAYERS)


@dataclasses.dataclass(frozen=True, eq=False)
class LayerSignals:
    """The arrays of one diagnosed layer on one batch (NumPy, float32).

    Args:
        layer: the Dense/Conv layer.
        depth: 1-based position among the diagnosed layers, in the model's topological order.
        activation: name of the activation applied to ``z``: the layer's own
            (fused) one, or that of a `keras.layers.Activation` (or plain
            `keras.layers.ReLU`) layer that is the only consumer of a linear
            layer's output; ``"linear"`` otherwise.
        inputs: what the layer receives, ``x``.
        preactivations: ``z = W x + b`` (`preactivations`).
        activations: ``a``, the output of the activation (the layer's output for ``"linear"``).
        unit_axis: the axis of ``z``/``a`` that indexes units (channels for conv layers).
    """

    layer: keras.layers.Layer = dataclasses.field(repr=False)
    depth: int
    activation: str
    inputs: np.ndarray = dataclasses.field(repr=False)
    preactivations: np.ndarray = dataclasses.field(repr=False)
    activations: np.ndarray = dataclasses.field(repr=False)
    unit_axis: int

    @property
    def name(self) -> str:
        return self.layer.name

    def unit_columns(self, values: np.ndarray) -> np.ndarray:
        """``values`` (shaped like ``a``) as ``(units, everything else)``: one row per unit."""
        moved = np.moveaxis(values, self.unit_axis, 0)
        return moved.reshape(moved.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class LayerDiagnostics:
    """Statistics of one Dense/Conv layer at initialization, over one batch.

    Pooled statistics are over every entry of the tensor (examples x positions x units).

    Args:
        name: the layer's name.
        depth: 1-based position among the diagnosed layers, in topological order.
        layer_class: e.g. ``"Dense"``, ``"Conv2D"``.
        activation: see `LayerSignals.activation`.
        fan_in: of the kernel (`keras_initlab.compute_fans`).
        input_second_moment: measured ``E[x**2]`` per kernel entry: the mean over
            units' input patches of ``|patch|**2 / fan_in`` (for Dense, the mean of
            ``x**2``; for conv it counts padding as zeros and follows the strides).
        preactivation_mean, preactivation_std: of ``z``, pooled.
        predicted_std: `predicted_preactivation_std` for the layer's initializers,
            kernel shape and the measured ``input_second_moment`` (and ``Var(S)``);
            NaN when those moments are not finite (the signal overflowed upstream);
            ``None`` when no prediction applies (``predict=False``: weights set from
            data, e.g. by `keras_initlab.lsuv`, follow no initializer's variance).
        std_ratio: ``preactivation_std / predicted_std``; ``None`` when the prediction is 0, NaN or ``None``.
        saturated_fraction: sigmoid: share of ``a < 0.01`` or ``a > 0.99``; tanh:
            share of ``|a| > 0.99``; ``None`` for other activations.
        dead_fraction: ReLU only: share of units whose output is 0 for every example
            and position of the batch; ``None`` for other activations.
        activation_std: std of ``a``, pooled.
        distinct_units: number of distinct unit columns of ``a`` (exact equality
            over the batch; dead units all count as one). 1 means no symmetry was broken.
        kernel_grad_norm: L2 norm of the gradient of the mean data loss (no
            regularization) with respect to the kernel; ``None`` without labels.
    """

    name: str
    depth: int
    layer_class: str
    activation: str
    fan_in: int
    input_second_moment: float
    preactivation_mean: float
    preactivation_std: float
    predicted_std: float | None
    std_ratio: float | None
    saturated_fraction: float | None
    dead_fraction: float | None
    activation_std: float
    distinct_units: int
    kernel_grad_norm: float | None = None


_COLUMNS = (
    ("depth", "#"),
    ("name", "layer"),
    ("activation", "activation"),
    ("fan_in", "fan_in"),
    ("input_second_moment", "E[x^2]"),
    ("preactivation_mean", "z mean"),
    ("preactivation_std", "z std"),
    ("predicted_std", "predicted std"),
    ("std_ratio", "ratio"),
    ("saturated_fraction", "saturated"),
    ("dead_fraction", "dead ReLU"),
    ("activation_std", "a std"),
    ("distinct_units", "distinct units"),
    ("kernel_grad_norm", "|grad W|"),
)


METRIC_NAMES = {
    "preactivation_mean": "preact_mean",
    "preactivation_std": "preact_std",
    "predicted_std": "predicted_std",
    "std_ratio": "std_ratio",
    "input_second_moment": "input_second_moment",
    "saturated_fraction": "saturated_fraction",
    "dead_fraction": "dead_fraction",
    "activation_std": "activation_std",
    "distinct_units": "distinct_units",
    "kernel_grad_norm": "grad_norm",
}
"""`LayerDiagnostics` field -> metric name in `DiagnosticsTable.metrics`."""


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class DiagnosticsTable(Sequence):
    """An immutable sequence of `LayerDiagnostics`, one per diagnosed layer, in depth order."""

    def __init__(self, rows: Sequence[LayerDiagnostics] = ()):
        self._rows = tuple(rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return DiagnosticsTable(self._rows[index])
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[LayerDiagnostics]:
        return iter(self._rows)

    def __eq__(self, other) -> bool:
        return isinstance(other, DiagnosticsTable) and self._rows == other._rows

    def __repr__(self) -> str:
        return f"DiagnosticsTable({list(self._rows)!r})"

    def by_name(self, name: str) -> LayerDiagnostics:
        """The row of the layer called ``name``."""
        for row in self._rows:
            if row.name == name:
                return row
        raise KeyError(f"No diagnosed layer named {name!r}; layers: {[r.name for r in self._rows]}")

    def to_records(self) -> list[dict]:
        """One plain dict per layer (`dataclasses.asdict`)."""
        return [dataclasses.asdict(row) for row in self._rows]

    def metrics(self, prefix: str = "init") -> dict[str, float]:
        """Flat ``{"<prefix>/layer<depth>/<metric>": value}`` for tracking, e.g. ``init/layer1/preact_std``.

        Keyed by depth, not layer name, so that the same metric lines up across
        models in the MLflow compare view. Metrics (`METRIC_NAMES`): ``preact_mean``,
        ``preact_std``, ``predicted_std``, ``std_ratio``, ``input_second_moment``,
        ``saturated_fraction``, ``dead_fraction``, ``activation_std``,
        ``distinct_units``, ``grad_norm``; those without a value (``None``) are left out.
        """
        out = {}
        for row in self._rows:
            for field, metric in METRIC_NAMES.items():
                value = getattr(row, field)
                if value is not None:
                    out[f"{prefix}/layer{row.depth}/{metric}"] = float(value)
        return out

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table, one row per layer (4 significant digits; ``-`` = not applicable)."""
        lines = [
            "| " + " | ".join(title for _, title in _COLUMNS) + " |",
            "|" + "|".join("---" for _ in _COLUMNS) + "|",
        ]
        for row in self._rows:
            lines.append("| " + " | ".join(_cell(getattr(row, field)) for field, _ in _COLUMNS) + " |")
        return "\n".join(lines)


# --------------------------------------------------------------------------- signals


def _flat_inputs(layer) -> list:
    try:
        return keras.tree.flatten(layer.input)
    except (AttributeError, ValueError):  # a layer never called symbolically
        return []


def activation_after(model: keras.Model, layer) -> tuple[str, keras.layers.Layer | None]:
    """(activation name, activation layer or None) for a diagnosed layer."""
    own = activation_name(getattr(layer, "activation", None))
    if own != "linear":
        return own, None
    consumers = [other for other in model.layers if any(t is layer.output for t in _flat_inputs(other))]
    if len(consumers) == 1:
        after = consumers[0]
        if isinstance(after, keras.layers.Activation):
            return activation_name(after.activation), after
        if (
            isinstance(after, keras.layers.ReLU)
            and after.max_value is None
            and not after.negative_slope
            and not after.threshold
        ):
            return "relu", after
    return "linear", None


_REGULARIZER_KEYS = (
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
)


def _twin(layer, input_shape, **overrides):
    """A fresh, built copy of ``layer``'s class from its config, linear and unregularized, with ``overrides``.

    Its initializers are replaced by zeros (the caller sets the weights), so no
    custom initializer needs to deserialize or draw.
    """
    config = layer.get_config()
    for key in _REGULARIZER_KEYS:
        if key in config:
            config[key] = None
    config.update(
        activation="linear", kernel_initializer="zeros", bias_initializer="zeros", name=f"{layer.name}_diagnostics"
    )
    config.update(overrides)
    twin = type(layer).from_config(config)
    twin.build(input_shape)
    return twin


def linear_twin(layer, input_shape):
    """``layer`` with its own weights and a linear activation: computes ``z = W x + b`` exactly as it does."""
    twin = _twin(layer, input_shape)
    twin.set_weights(layer.get_weights())
    return twin


def _patch_sum_layer(layer, input_shape):
    """A layer like ``layer`` with an all-ones kernel and no bias: per group, the sum over each unit's input patch."""
    units_key = "filters" if "filters" in layer.get_config() else "units"
    units = {units_key: getattr(layer, "groups", 1)}
    return _twin(layer, input_shape, use_bias=False, kernel_initializer="ones", **units)


def _is_plain_dense(layer) -> bool:
    """A float32 `keras.layers.Dense` itself (not a subclass, not quantized): ``z = x @ kernel + bias`` on the last
    axis, which NumPy computes without building the copies of the layer that other layers need."""
    return type(layer) is keras.layers.Dense and layer.quantization_mode is None and layer.compute_dtype == "float32"


def dense_chain(model: keras.Model, layers: Sequence[keras.layers.Layer]) -> bool:
    """Whether ``model`` is a chain of its diagnosed ``layers``, all plain Dense layers (`_is_plain_dense`, no LoRA),
    as `keras_initlab.build_mlp` makes them: each takes the previous one's output (the first the model's input) and
    the last gives the model's output. `chain_forward` runs such a model with ``z`` as the layers compute it."""
    own = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if own != list(layers) or len(model.inputs) != 1 or len(model.outputs) != 1:
        return False
    if any(not _is_plain_dense(layer) or layer.lora_enabled for layer in layers):
        return False
    received = [model.inputs[0]] + [layer.output for layer in layers]
    return (
        all(layer.input is r for layer, r in zip(layers, received[:-1], strict=True))
        and received[-1] is model.outputs[0]
    )


def chain_forward(layers: Sequence[keras.layers.Layer], x) -> tuple[list, list, list]:
    """``(inputs, z, a)`` of every layer of a `dense_chain` on ``x``: ``z = x @ kernel + bias`` and ``a = f(z)``,
    the operations of the Dense layer's own ``call``, so ``z`` is the layer's own pre-activation and the last ``a``
    the model's output (one pass, no Keras layer calls)."""
    inputs, zs, activations = [], [], []
    for layer in layers:
        inputs.append(x)
        z = keras.ops.matmul(x, layer.kernel)
        zs.append(z if layer.bias is None else keras.ops.add(z, layer.bias))
        x = layer.activation(zs[-1])
        activations.append(x)
    return inputs, zs, activations


def preactivations(layer, x: np.ndarray) -> np.ndarray:
    """``z = W x + b`` of ``layer`` on its inputs ``x``: for a plain Dense layer ``x @ kernel + bias`` in NumPy,
    otherwise a `linear_twin` of the layer (its own padding, strides, dilation)."""
    if _is_plain_dense(layer):  # summed in float64: z to float32 rounding; an overflow is inf, as in the layer
        with np.errstate(over="ignore", invalid="ignore"):
            z = x.astype(np.float64) @ keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
            if layer.use_bias:
                z += keras.ops.convert_to_numpy(layer.bias)
            return z.astype(x.dtype)
    return np.asarray(linear_twin(layer, (None, *x.shape[1:]))(x))


def _patch_sums(layer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sum of x, sum of x**2)`` over each unit's input patch (float64): for Dense the whole last axis, for a
    convolution what an all-ones copy of the layer sums (`_patch_sum_layer`: same padding, strides, groups)."""
    if _is_plain_dense(layer):
        x64 = x.astype(np.float64)
        return x64.sum(axis=-1), (x64 * x64).sum(axis=-1)
    patch_sum = _patch_sum_layer(layer, (None, *x.shape[1:]))
    return np.asarray(patch_sum(x), dtype=np.float64), np.asarray(patch_sum(x * x), dtype=np.float64)


def _unit_axis(layer, ndim: int) -> int:
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return 1
    return ndim - 1


def model_input(model: keras.Model, x_batch) -> np.ndarray:
    x = np.asarray(x_batch)
    if len(model.inputs) == 1:
        return as_model_input(model, x)
    raise ValueError(f"A model with one input is needed; {model.name!r} has {len(model.inputs)}.")


def diagnosed_layers(model: keras.Model) -> list:
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(_is_diagnosed(inner) for inner in all_layers(layer)):
            raise ValueError(
                f"Model {model.name!r} nests model {layer.name!r}, which holds Dense/Conv layers; "
                "only one level is read: rebuild it as one functional model."
            )
    layers = [layer for layer in model.layers if _is_diagnosed(layer)]
    if not layers:
        raise ValueError(f"Model {model.name!r} has no Dense or Conv1D/2D/3D layer.")
    for layer in layers:
        if not _flat_inputs(layer):
            raise ValueError(f"Layer {layer.name!r} has no symbolic input: a functional or Sequential model is needed.")
    return layers


def collect_signals(model: keras.Model, x_batch) -> list[LayerSignals]:
    """Inputs, pre-activations and activations of every Dense/Conv layer on ``x_batch``.

    One forward pass of a probe model (the model's graph with every diagnosed
    layer's input and activation output as outputs, ``training=False``); ``z``
    is `preactivations` of each layer's input: for convolutions a linear copy of the
    layer, so padding, strides and dilation are those of the layer itself. A chain
    of plain Dense layers (`dense_chain`, e.g. `keras_initlab.build_mlp`'s) is run
    layer by layer instead (`chain_forward`), ``z`` the one each layer computes.

    Works for functional and Sequential models with one input (images are
    reshaped to the input shape, as in training); an unbuilt Sequential model is
    built for ``x_batch``'s shape. A layer called more than once is reported for
    its first call.
    """
    return _measure(model, x_batch)[0]


def _measure(model: keras.Model, x_batch, y_batch=None, loss=None) -> tuple[list[LayerSignals], list | None]:
    """`collect_signals`, and given labels the kernels' gradient norms (else ``None``): one pass for a `dense_chain`."""
    if isinstance(model, keras.Sequential) and not model.built:
        model.build((None, *np.asarray(x_batch).shape[1:]))
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(f"diagnose needs a functional or Sequential model; {model.name!r} has no symbolic inputs.")
    x = model_input(model, x_batch)
    layers = diagnosed_layers(model)
    labels = _labels(model, len(x), y_batch, loss)
    if dense_chain(model, layers):  # layer by layer: each z as the layer computes it, no probe model, no copies
        if labels is None:
            passes, grad_norms = chain_forward(layers, keras.ops.convert_to_tensor(x)), None
        else:
            passes, grad_norms = _gradient_pass(model, layers, x, *labels)
        signals = []
        for depth, (layer, received, z, a) in enumerate(zip(layers, *passes, strict=True), start=1):
            received, z, a = np.asarray(received), np.asarray(z), np.asarray(a)
            name = activation_after(model, layer)[0]
            signals.append(LayerSignals(layer, depth, name, received, z, a, _unit_axis(layer, z.ndim)))
        return signals, grad_norms
    activations = [activation_after(model, layer) for layer in layers]
    probe_outputs = [layer.input for layer in layers] + [
        (after if after is not None else layer).output for layer, (_, after) in zip(layers, activations, strict=True)
    ]
    probe = keras.Model(inputs[0], probe_outputs, name=f"{model.name}_probe")
    values = [np.asarray(v) for v in probe(x, training=False)]
    signals = []
    for depth, (layer, (name, _)) in enumerate(zip(layers, activations, strict=True), start=1):
        received, acts = values[depth - 1], values[len(layers) + depth - 1]
        z = preactivations(layer, received)
        signals.append(LayerSignals(layer, depth, name, received, z, acts, _unit_axis(layer, z.ndim)))
    return signals, None if labels is None else _gradient_pass(model, layers, x, *labels)[1]


# --------------------------------------------------------------------------- statistics


def _labels(model: keras.Model, examples: int, y_batch, loss) -> tuple | None:
    """``(labels, loss function)`` for the gradient norms (``loss`` a callable, a Keras loss name, or ``None``: the
    model's `default_loss`), ``None`` without ``y_batch``; a ValueError for a ``loss`` alone or a wrong count."""
    if loss is not None and y_batch is None:
        raise ValueError("A `loss` was given without `y_batch`: the gradient norms need labels.")
    if y_batch is None:
        return None
    y = np.asarray(y_batch)
    if len(y) != examples:
        raise ValueError(f"x_batch has {examples} examples but y_batch has {len(y)}.")
    return y, keras.losses.get(loss) if isinstance(loss, str) else (loss or default_loss(model))


def _gradient_pass(model: keras.Model, layers: list, x, y, loss) -> tuple[tuple, list[float]]:
    """``(passes, norms)``: the L2 norms of the gradients of the mean ``loss`` on ``(x, y)`` for the ``layers``'
    kernels, and for a `dense_chain` the `chain_forward` they come from (else ``()``: the model's own pass)."""
    require_tensorflow("diagnose's gradient norms (given `y_batch`)")
    chain = dense_chain(model, layers)
    with tf.GradientTape() as tape:
        passes = chain_forward(layers, tf.convert_to_tensor(x)) if chain else ()
        value = keras.ops.mean(loss(y, passes[2][-1] if passes else model(x, training=False)))
    gradients = tape.gradient(value, [layer.kernel for layer in layers])
    return passes, [float(tf.norm(g)) if g is not None else 0.0 for g in gradients]


def _saturated_fraction(activation: str, a: np.ndarray) -> float | None:
    if activation == "sigmoid":
        low, high = SIGMOID_SATURATION
        return float(np.mean((a < low) | (a > high)))
    if activation == "tanh":
        return float(np.mean(np.abs(a) > TANH_SATURATION))
    return None


def _distinct_rows(rows: np.ndarray) -> int:
    """Number of distinct rows (exact equality; -0.0 counts as 0.0). Hashes bytes: `np.unique(axis=0)` is slow."""
    rows = np.ascontiguousarray(rows + rows.dtype.type(0))
    return len({row.tobytes() for row in rows})


def _layer_row(signal: LayerSignals, grad_norm: float | None, predict: bool) -> LayerDiagnostics:
    layer, x, z, a = signal.layer, signal.inputs, signal.preactivations, signal.activations
    kernel_shape = tuple(int(d) for d in layer.kernel.shape)
    fan_in, _ = compute_fans(kernel_shape)
    # A model whose signal overflows (huge weights) gets inf/NaN statistics, not warnings or errors.
    with np.errstate(over="ignore", invalid="ignore"):
        sums, square_sums = _patch_sums(layer, x)
        second_moment = float(np.mean(square_sums)) / fan_in
        sum_variance = float(np.var(sums))
    if not predict:
        predicted = None
    elif math.isfinite(second_moment) and math.isfinite(sum_variance):
        predicted = predicted_preactivation_std(
            layer.kernel_initializer,
            layer.bias_initializer if getattr(layer, "use_bias", True) else None,
            second_moment,
            kernel_shape,
            input_sum_variance=sum_variance,
        )
    else:  # no finite prediction from non-finite input moments
        predicted = math.nan
    z64, a64 = z.astype(np.float64), a.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        z_mean, z_std, a_std = float(np.mean(z64)), float(np.std(z64)), float(np.std(a64))
    columns = signal.unit_columns(a)
    return LayerDiagnostics(
        name=layer.name,
        depth=signal.depth,
        layer_class=type(layer).__name__,
        activation=signal.activation,
        fan_in=fan_in,
        input_second_moment=second_moment,
        preactivation_mean=z_mean,
        preactivation_std=z_std,
        predicted_std=predicted,
        std_ratio=z_std / predicted if predicted is not None and predicted > 0 else None,
        saturated_fraction=_saturated_fraction(signal.activation, a),
        dead_fraction=float(np.mean(np.all(columns == 0, axis=1))) if signal.activation == "relu" else None,
        activation_std=a_std,
        distinct_units=_distinct_rows(columns),
        kernel_grad_norm=grad_norm,
    )


def diagnose(
    model: keras.Model, x_batch, y_batch=None, loss: Callable | str | None = None, predict: bool = True
) -> DiagnosticsTable:
    """Per-layer statistics of ``model`` on one batch, beside the theory's prediction.

    Reports every Dense/Conv1D/2D/3D layer (`DIAGNOSED_LAYERS`) in topological
    order; see `LayerDiagnostics` for the fields. The prediction uses the
    initializers stored on each layer, so it describes the model as initialized
    (after training the ratio no longer means anything), and raises the
    `TypeError` of `predicted_preactivation_std` for an initializer class whose
    variance is unknown.

    The activation of a layer is its own (fused, as in `keras_initlab.models`)
    or, for a layer with a linear activation whose output goes only to a
    `keras.layers.Activation` (or a plain `keras.layers.ReLU`), that layer's.

    Args:
        model: a functional or Sequential Keras model with one input.
        x_batch: inputs (images are reshaped to the model's input shape).
        y_batch: integer labels; when given, one backward pass fills ``kernel_grad_norm``.
        loss: ``loss(y_true, y_pred)`` per example (or a Keras loss name);
            default `keras_initlab.models.default_loss(model)`. Needs ``y_batch``.
        predict: ``False`` for weights that no initializer's variance describes (set
            from data by `keras_initlab.lsuv`): the prediction and the ratio are then
            ``None``, shown as ``-``, and unknown initializer classes do not raise.
    """
    return _table(*_measure(model, x_batch, y_batch, loss), predict)


def tabulate(
    model: keras.Model,
    signals: Sequence[LayerSignals],
    x_batch,
    y_batch=None,
    loss: Callable | str | None = None,
    predict: bool = True,
) -> DiagnosticsTable:
    """The `diagnose` table from signals already collected (`collect_signals` of ``model`` on ``x_batch``)."""
    labels = _labels(model, len(signals[0].inputs), y_batch, loss)
    if labels is None:
        return _table(signals, None, predict)
    x = model_input(model, x_batch)
    return _table(signals, _gradient_pass(model, [s.layer for s in signals], x, *labels)[1], predict)


def _table(signals: Sequence[LayerSignals], grad_norms: list | None, predict: bool) -> DiagnosticsTable:
    norms = grad_norms if grad_norms is not None else [None] * len(signals)
    return DiagnosticsTable([_layer_row(s, g, predict) for s, g in zip(signals, norms, strict=True)])
