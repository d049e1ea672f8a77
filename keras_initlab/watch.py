"""Watching the layers during training: `diagnose`'s statistics after every epoch, on one fixed probe batch.

`keras_initlab.diagnose` shows where a network starts. A `LayerWatch` follows the same statistics through
training: after every ``every``-th epoch, the trainers (`keras_initlab.train` and `keras_initlab.train_stacked`,
given ``watch=``) and the `WatchLayers` callback (for your own ``model.fit``) measure, for every Dense/Conv layer
``k`` (1-based, in depth order as in `diagnose`), on the probe batch with ``training=False``, and add to that
epoch's logs (so to Keras' ``History`` and to every callback after them):

- ``layers/layer{k}/preact_std``: the std of ``z = W x + b``, pooled over examples, positions and units;
- ``layers/layer{k}/activation_std``: the std of ``a = f(z)``, pooled;
- ``layers/layer{k}/dead_fraction`` for ReLU: the share of units with ``a = 0`` on every example and position;
  ``layers/layer{k}/saturated_fraction`` for sigmoid (``a < 0.01`` or ``a > 0.99``) and tanh (``|a| > 0.99``);
- ``layers/layer{k}/grad_norm``: ``||dL/dW_k||``, ``L`` the mean data loss on the batch (no regularization);
- ``layers/layer{k}/update_ratio``: ``||W_k - W_k'|| / ||W_k'||``, ``W_k'`` the kernel at the previous
  measurement (at the start of training for the first).

These are `diagnose`'s definitions (float32 here, float64 there): at step 0 the same names hold ``diagnose``'s
values (`step_zero`). One pass
forward and back on the probe batch costs about what a training step on a batch of its size costs; the trainers
compile it once per architecture (`train_stacked`: one pass for all its stacked models).

>>> from keras_initlab import build_mlp, load_dataset, train
>>> data = load_dataset("mnist-10k")
>>> model = build_mlp([784, 30, 10], scheme="nielsen-default", seed=0)
>>> watch = LayerWatch(data.x_val[:1000], data.y_val[:1000])
>>> history = train(model, data, epochs=2, watch=watch)
>>> sorted(key for key in history.history if key.startswith("layers/layer1/"))  # doctest: +NORMALIZE_WHITESPACE
['layers/layer1/activation_std', 'layers/layer1/grad_norm', 'layers/layer1/preact_std',
 'layers/layer1/saturated_fraction', 'layers/layer1/update_ratio']
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_initlab.backend import require_tensorflow
from keras_initlab.checks import check_int, fail
from keras_initlab.diagnostics import (
    SIGMOID_SATURATION,
    TANH_SATURATION,
    DiagnosticsTable,
    activation_after,
    chain_forward,
    dense_chain,
    diagnosed_layers,
    model_input,
)
from keras_initlab.models import default_loss

__all__ = ["STEP_ZERO", "LayerWatch", "WatchLayers", "layer_key", "step_zero"]

STEP_ZERO = ("preact_std", "activation_std", "dead_fraction", "saturated_fraction", "grad_norm")
"""The watched statistics `diagnose` also measures (its `DiagnosticsTable.metrics` names): the values at step 0.
After an epoch a layer also gets ``update_ratio``."""


def layer_key(depth: int, stat: str) -> str:
    """The metric name of statistic ``stat`` of the ``depth``-th Dense/Conv layer: ``layers/layer{depth}/{stat}``."""
    return f"layers/layer{depth}/{stat}"


def step_zero(table: DiagnosticsTable) -> dict[str, float]:
    """The watched statistics at step 0, from `diagnose`'s table: ``{layers/layer{k}/{stat}: value}`` for the
    `STEP_ZERO` statistics it holds."""
    return {key: value for key, value in table.metrics("layers").items() if key.rsplit("/", 1)[1] in STEP_ZERO}


@dataclasses.dataclass(frozen=True, eq=False)
class LayerWatch:
    """What to watch: the probe batch ``x`` (inputs, reshaped to the model's input as in training), its integer
    labels ``y``, every how many epochs (``every``: after epochs ``every``, ``2 * every``, ...), and the loss whose
    gradient is measured (``loss(y_true, y_pred)`` per example; default the one the trainer trains with)."""

    x: np.ndarray
    y: np.ndarray
    every: int = 1
    loss: Callable | None = None

    def __post_init__(self):
        x, y = np.asarray(self.x), np.asarray(self.y)
        check_int(self.every, "every", minimum=1)
        if len(x) < 2 or len(x) != len(y):
            raise ValueError(
                f"LayerWatch needs a probe batch of at least 2 examples with one label each; got "
                f"x of {len(x)} and y of {len(y)} examples"
            )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def due(self, epoch: int) -> bool:
        """Whether the 0-based ``epoch``, once trained, is measured."""
        return (epoch + 1) % self.every == 0


def check_watch(watch) -> None:
    """A TypeError unless ``watch`` is a `LayerWatch` or ``None``."""
    if watch is not None and not isinstance(watch, LayerWatch):
        fail(TypeError, "watch", "a keras_initlab.LayerWatch or None", watch)


def unit_statistics(z: tf.Tensor, a: tf.Tensor, activation: str) -> dict[str, tf.Tensor]:
    """The statistics of one layer of K models: ``z`` and ``a`` shaped ``(K, examples, ..., units)`` (units last);
    ``{stat: (K,) tensor}`` for ``preact_std``, ``activation_std`` and, by ``activation``, ``dead_fraction`` or
    ``saturated_fraction``."""
    pooled = list(range(1, len(z.shape)))
    out = {"preact_std": tf.math.reduce_std(z, axis=pooled), "activation_std": tf.math.reduce_std(a, axis=pooled)}
    if activation == "relu":
        dead = tf.reduce_all(tf.equal(a, 0.0), axis=pooled[:-1])  # (K, units): zero on every example and position
        out["dead_fraction"] = tf.reduce_mean(tf.cast(dead, tf.float32), axis=1)
    elif activation == "sigmoid":
        low, high = SIGMOID_SATURATION
        out["saturated_fraction"] = tf.reduce_mean(tf.cast((a < low) | (a > high), tf.float32), axis=pooled)
    elif activation == "tanh":
        out["saturated_fraction"] = tf.reduce_mean(tf.cast(tf.abs(a) > TANH_SATURATION, tf.float32), axis=pooled)
    return out


def _norms(t: tf.Tensor) -> tf.Tensor:
    """The L2 norm of each model's slice of ``t`` (leading model axis): ``(K,)``."""
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=list(range(1, len(t.shape)))))


def layer_statistics(layers: Sequence[tuple]) -> tuple[list[str], tf.Tensor]:
    """Every watched statistic of K models, in one tensor: ``(names, values)``, ``values`` shaped ``(statistics, K)``
    and ``names`` its rows (``layers/layer{k}/{stat}``).

    ``layers``: per Dense/Conv layer in depth order, ``(z, a, activation, kernel gradient, kernel, previous kernel)``,
    each with a leading axis of K models (``z`` and ``a`` with units last): `unit_statistics`, ``grad_norm`` and
    ``update_ratio`` (``||W - W'|| / ||W'||``, ``W'`` the previous kernel). Both trainers build theirs with it."""
    names: list[str] = []
    values: list[tf.Tensor] = []
    for depth, (z, a, activation, grad, kernel, previous) in enumerate(layers, start=1):
        stats = unit_statistics(z, a, activation)
        stats["grad_norm"] = _norms(grad)
        stats["update_ratio"] = _norms(kernel - previous) / _norms(previous)
        names += [layer_key(depth, stat) for stat in stats]
        values += stats.values()
    return names, tf.stack(values)


def _linear(layer: keras.layers.Layer, x: tf.Tensor) -> tf.Tensor:
    """``z = W x + b`` of a Dense or Conv layer on its input, with the layer's own variables (as its ``call``)."""
    if isinstance(layer, keras.layers.Dense):
        z = keras.ops.matmul(x, layer.kernel)
        return z if layer.bias is None else z + layer.bias
    z = layer.convolution_op(x, layer.kernel)
    if not layer.use_bias:
        return z
    shape = (
        (1,) * (layer.rank + 1) + (layer.filters,)
        if layer.data_format == "channels_last"
        else ((1, layer.filters) + (1,) * layer.rank)
    )
    return z + keras.ops.reshape(layer.bias, shape)


class ModelProbe:
    """The compiled statistics pass of one model: `measure` gives its layers' statistics (`LayerWatch`) on a batch.

    One forward pass of the model's graph with every diagnosed layer's input and activation output as outputs,
    ``z`` from each layer's input and variables, and one backward pass for the kernels' gradient norms: a
    ``tf.function`` without AutoGraph or XLA (on the 30-layer ReLU MLP of ``deep-relu``, 2-core CPU: traced in ~3 s
    against ~6.5 s with XLA, for 0.09 s a call against 0.055 s: XLA pays off only after ~100 measurements), whose
    statistics come back as one vector (a conversion per value cost as much again as the pass). The kernels of the
    previous measurement (`start` sets them: the first measurement's ``update_ratio`` is against them) are kept on
    the device and updated by the pass itself: reading 30 kernels back each time cost ~25 ms a measurement.
    """

    def __init__(self, model: keras.Model, loss: Callable):
        require_tensorflow("keras_initlab.watch")
        self.layers = diagnosed_layers(model)
        activations = [activation_after(model, layer) for layer in self.layers]
        self.activations = [name for name, _ in activations]
        self.loss = loss
        self.chain = dense_chain(model, self.layers)
        self.probe: keras.Model | None = None  # a chain is run by `_signals` itself; any other model through this one
        if not self.chain:
            outputs = [layer.input for layer in self.layers] + [
                (after if after is not None else layer).output
                for layer, (_, after) in zip(self.layers, activations, strict=True)
            ]
            self.probe = keras.Model(model.inputs[0], [*outputs, model.outputs[0]], name=f"{model.name}_watch")
        self._previous = [tf.Variable(layer.kernel, trainable=False) for layer in self.layers]
        self._measure = tf.function(self._statistics, autograph=False)
        self.names: list[str] = []  # what `_statistics` returns, in order: set when it is traced
        self._tracing: threading.Thread | None = None

    def prepare(self, x, y) -> None:
        """Traces the pass for the batch ``(x, y)`` on a thread of its own while the caller goes on (compiles and
        runs a training epoch, which releases Python's GIL); the first `measure` waits for it. On ``deep-relu``'s 31
        layers tracing is ~1.4 s of the first measurement's ~2 s."""
        if self._tracing is None and not self.names:
            self._tracing = threading.Thread(
                target=self._measure.get_concrete_function, args=(x, y), daemon=True, name="keras-initlab-watch-trace"
            )
            self._tracing.start()

    def start(self) -> None:
        """The model's kernels now as those of the previous measurement (a run starts from them)."""
        for previous, layer in zip(self._previous, self.layers, strict=True):
            previous.assign(layer.kernel)

    def _signals(self, x) -> tuple[list, list, tf.Tensor]:
        """Every diagnosed layer's ``z`` and ``a`` on ``x``, and the model's output. A chain of Dense layers (as
        `keras_initlab.build_mlp` makes) is run layer by layer (`keras_initlab.diagnostics.chain_forward`), so that
        ``z`` is the forward pass's own; any other model runs its own graph, and ``z`` is computed again from each
        layer's input (a Keras model does not expose a layer's pre-activation): one more product per layer."""
        if self.chain:
            _, zs, activations = chain_forward(self.layers, x)
            return zs, activations, activations[-1]
        n = len(self.layers)
        assert self.probe is not None  # made in __init__ for every model that is not a chain
        values = self.probe(x, training=False)
        return (
            [_linear(layer, received) for layer, received in zip(self.layers, values[:n], strict=True)],
            values[n : 2 * n],
            values[-1],
        )

    def _statistics(self, x, y):
        kernels = [layer.kernel for layer in self.layers]
        with tf.GradientTape() as tape:
            zs, activations, output = self._signals(x)
            loss = keras.ops.mean(self.loss(y, output))
        grads = tape.gradient(loss, kernels)
        layers = []
        for layer, activation, z, a, grad, previous in zip(
            self.layers, self.activations, zs, activations, grads, self._previous, strict=True
        ):
            if getattr(layer, "data_format", "channels_last") == "channels_first":
                z, a = (tf.experimental.numpy.moveaxis(t, 1, -1) for t in (z, a))
            grad = tf.zeros_like(layer.kernel) if grad is None else grad
            one = [
                tf.expand_dims(t, 0) for t in (z, a, grad, layer.kernel, previous)
            ]  # K = 1 model (fewer ops than [None])
            layers.append((one[0], one[1], activation, *one[2:]))
        # The names are the same at every trace (the layers and their activations decide them).
        self.names, stats = layer_statistics(layers)
        with tf.control_dependencies([stats]):
            for previous, layer in zip(self._previous, self.layers, strict=True):
                previous.assign(layer.kernel)
        return stats

    def measure(self, x, y) -> dict[str, float]:
        """``{layers/layer{k}/{stat}: value}`` on the batch ``(x, y)`` (tensors or arrays shaped for the model); the
        update ratios against the kernels of the previous measurement (or of `start`), which these then replace."""
        if self._tracing is not None:  # `prepare`'s trace (a failure there is the call's own again)
            self._tracing.join()
        values = self._measure(x, y).numpy()[:, 0].tolist()  # traced on the first call, which sets `names`
        return dict(zip(self.names, values, strict=True))


class WatchLayers(keras.callbacks.Callback):
    """The `LayerWatch` statistics of the model ``fit`` trains, added to the epoch's logs (put it before the
    callbacks that read them: Keras hands each callback the same logs in order).

    ``initial`` holds the statistics at the start of training (step 0; without ``update_ratio``).

    >>> from keras_initlab import build_mlp, load_dataset
    >>> data = load_dataset("mnist-10k").subset(1000, 200)
    >>> model = build_mlp([784, 30, 10], activation="relu", output="softmax", scheme="he", seed=0)
    >>> model.compile("sgd", "sparse_categorical_crossentropy")
    >>> watch = WatchLayers(data.x_val, data.y_val)
    >>> x = data.x_train.reshape(len(data.x_train), -1)  # the MLP's flat input
    >>> history = model.fit(x, data.y_train, epochs=1, callbacks=[watch], verbose=0)
    >>> "layers/layer1/grad_norm" in history.history, "layers/layer1/grad_norm" in watch.initial
    (True, True)
    """

    def __init__(self, x, y, every: int = 1, loss: Callable | None = None):
        super().__init__()
        self.watch = LayerWatch(x, y, every, loss)
        self.initial: dict[str, float] = {}

    def on_train_begin(self, logs=None):
        loss = self.watch.loss or getattr(self.model, "loss", None) or default_loss(self.model)
        if isinstance(loss, str):
            loss = keras.losses.get(loss)
        self._probe = ModelProbe(self.model, loss)
        self._x = model_input(self.model, self.watch.x)
        self.initial = {
            key: value
            for key, value in self._probe.measure(self._x, self.watch.y).items()
            if not key.endswith("/update_ratio")
        }

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.watch.due(epoch):
            logs.update(self._probe.measure(self._x, self.watch.y))
