"""Many identical-shaped MLPs trained side by side in one compiled graph.

A comparison is many small models (schemes x seeds) that differ only in their
initial weights. At mini-batch 10 each step of one model is overhead, not
arithmetic, so `train_stacked` holds the weights of K models with a leading
model axis, ``(K, fan_in, units)``, and runs one epoch of all K as one
XLA-compiled loop: the first layer of all K models is one matrix product
``(batch, fan_in) x (fan_in, K * units)``.

Every model sees the same mini-batches in the same order as
`keras_initlab.training.train` with the same ``seed`` (common random numbers
across the models: differences between them come from the initialization
alone, a paired comparison), with its own loss, its own L2 term and plain SGD,
so each model follows the trajectory it would follow alone under ``train``
(to float32 rounding).

>>> from keras_initlab import build_mlp, load_dataset
>>> data = load_dataset("mnist-10k")
>>> models = [build_mlp([784, 30, 10], scheme=s, l2_lambda=5.0, n_train=data.n_train, seed=0)
...           for s in ("nielsen-default", "nielsen-large", "he")]
>>> histories = train_stacked(models, data, epochs=30, batch_size=10, learning_rate=0.1, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import keras
import tensorflow as tf

from keras_initlab.backend import require_tensorflow
from keras_initlab.checks import check_list, check_number, check_optional_int, fail
from keras_initlab.models import activation_name, default_loss
from keras_initlab.training.driver import (
    DeviceData, EpochReporter, NonFiniteLossError, accuracy, check_schedule, epoch_orders, resolve_device,
    run_minibatches,
)
from keras_initlab.training.planning import parallel_lanes, plan_groups
from keras_initlab.training.single import train


class _Architecture:
    """What must agree between stacked models: input size, Dense layers (units, activation), L2."""

    def __init__(self, model: keras.Model):
        self.model = model
        self.layers = _dense_layers(model)
        self.input_size = math.prod(model.input_shape[1:])
        self.units = [layer.units for layer in self.layers]
        self.activations = [activation_name(layer.activation) for layer in self.layers]
        self.l2 = _l2_coefficient(self.layers[0])
        self.loss = default_loss(model)

    @property
    def sizes(self) -> list[int]:
        return [self.input_size, *self.units]

    def differences(self, other: _Architecture) -> list[str]:
        """What differs, in words (empty when the two stack)."""
        if self.sizes != other.sizes:
            return [f"sizes {other.sizes} != {self.sizes}"]
        found = []
        for i, (a, b) in enumerate(zip(self.activations, other.activations), start=1):
            if a != b:
                found.append(f"activation of Dense layer {i} {b!r} != {a!r}")
        for i, layer in enumerate(other.layers, start=1):
            if _l2_coefficient(layer) != self.l2:
                found.append(f"L2 coefficient of Dense layer {i} {_l2_coefficient(layer)!r} != {self.l2!r}")
        return found


def _dense_layers(model: keras.Model) -> list[keras.layers.Dense]:
    """The model's Dense layers, checked to be what `build_mlp` makes: a plain chain of biased Dense layers."""
    if len(model.input_shape) != 2:
        raise ValueError(
            f"train_stacked trains MLPs built by keras_initlab.models.build_mlp, whose input is a flat vector; "
            f"model {model.name!r} has input shape {model.input_shape}."
        )
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for layer in layers:
        problem = None
        if not isinstance(layer, keras.layers.Dense):
            problem = f"is a {type(layer).__name__}; only Dense layers stack"
        elif not layer.use_bias:
            problem = "has no bias"
        elif layer.bias_regularizer is not None or layer.activity_regularizer is not None:
            problem = "has a bias or activity regularizer; only kernel L2 is supported"
        elif layer.kernel_constraint is not None or layer.bias_constraint is not None:
            problem = "has a weight constraint"
        elif layer.kernel.dtype != "float32" or layer.bias.dtype != "float32":
            problem = f"holds {layer.kernel.dtype} weights; only float32 is supported"
        elif layer.kernel_regularizer is not None and type(layer.kernel_regularizer) is not keras.regularizers.L2:
            problem = f"has a {type(layer.kernel_regularizer).__name__} kernel regularizer; only L2 is supported"
        if problem:
            raise ValueError(
                f"train_stacked trains MLPs built by keras_initlab.models.build_mlp; "
                f"layer {layer.name!r} of model {model.name!r} {problem}."
            )
    if not layers:
        raise ValueError(f"Model {model.name!r} has no Dense layers to train.")
    return layers


def _l2_coefficient(layer: keras.layers.Dense) -> float:
    regularizer = layer.kernel_regularizer
    return 0.0 if regularizer is None else float(regularizer.l2)


def _architecture(models: Sequence[keras.Model]) -> _Architecture:
    """The common architecture of ``models``; a ValueError names the first thing that differs."""
    models = check_list(models, "models", min_len=1, what="Keras model(s)")
    for k, model in enumerate(models):
        if not isinstance(model, keras.Model):
            fail(TypeError, f"models[{k}]", "a Keras model", model)
    if len({id(m) for m in models}) != len(models):
        raise ValueError("Argument `models` holds the same model more than once; each slot trains its own weights.")
    first = _Architecture(models[0])
    l2s = {_l2_coefficient(layer) for layer in first.layers}
    if len(l2s) > 1:
        raise ValueError(
            f"The Dense layers of model {models[0].name!r} have different L2 coefficients {sorted(l2s)}; "
            "train_stacked needs one coefficient per model, as build_mlp makes."
        )
    for k, model in enumerate(models[1:], start=1):
        differences = first.differences(_Architecture(model))
        if differences:
            raise ValueError(
                f"Stacked models must have the same architecture: model {k} ({model.name!r}) differs from "
                f"model 0 ({models[0].name!r}) in " + "; ".join(differences) + "."
            )
    return first


class _StackedEpoch:
    """The compiled per-epoch loop and validation pass of K stacked models.

    The weights are plain tensors, ``[kernel_1, bias_1, kernel_2, ...]`` with a
    leading model axis: kernels ``(K, fan_in, units)``, biases ``(K, units)``.
    Inside a call the first kernel is laid out ``(fan_in, K, units)``, so the first
    layer of all K models is one matrix product ``(batch, fan_in) x (fan_in, K * units)``
    (and its gradient one ``(fan_in, batch) x (batch, K * units)``), not K small ones.
    Gradients come from autodiff of the sum of the K losses, which is model k's
    own gradient for model k's slice: the models never mix.
    """

    def __init__(self, arch: _Architecture, batch_size: int, learning_rate: float):
        self.activations = [layer.activation for layer in arch.layers]
        self.loss, self.l2 = arch.loss, arch.l2
        self.batch_size, self.learning_rate = batch_size, learning_rate
        self.train = tf.function(self._train, jit_compile=True)
        self.evaluate = tf.function(self._evaluate, jit_compile=True)

    @staticmethod
    def _first_product(kernel, x):
        """``x @ kernel`` for all K models: ``(n, fan_in) x (fan_in, K, units) -> (n, K * units)``."""
        return tf.matmul(x, tf.reshape(kernel, (kernel.shape[0], -1)))

    def _forward(self, product, params, y):
        """Per-model data losses ``(K,)`` and outputs ``(K, n, classes)``.

        ``product`` is `_first_product` of the first layer; ``params`` the weights
        after the first kernel (first bias, then kernel, bias, ...); ``y`` the labels.
        """
        bias = params[0]
        k, units = bias.shape
        n = tf.shape(product)[0]
        z = tf.transpose(tf.reshape(product, (n, k, units)), (1, 0, 2)) + bias[:, None, :]
        for i, activation in enumerate(self.activations[1:]):
            kernel, bias = params[2 * i + 1], params[2 * i + 2]
            z = tf.matmul(self.activations[i](z), kernel) + bias[:, None, :]
        # The output activation and the loss see a 2-D (K * n, classes) tensor, exactly like one model's
        # Dense output: Keras' cross-entropies then take the same (logits or probabilities) path.
        classes = z.shape[2]
        pred = self.activations[-1](tf.reshape(z, (-1, classes)))
        per_example = self.loss(tf.tile(y, [k]), pred)
        return tf.reduce_mean(tf.reshape(per_example, (k, n)), axis=1), tf.reshape(pred, (k, n, classes))

    def _sgd_step(self, params, x, y):
        """One SGD step of all K models on one mini-batch; returns (new weights, data losses ``(K,)``)."""
        with tf.GradientTape() as tape:
            tape.watch(params)
            data_losses, _ = self._forward(self._first_product(params[0], x), params[1:], y)
            loss = tf.reduce_sum(data_losses)  # d(sum)/d(model k's weights) = d(loss k)/d(model k's weights)
            if self.l2:
                for kernel in params[0::2]:
                    loss += self.l2 * tf.reduce_sum(tf.square(kernel))
        grads = tape.gradient(loss, params)
        return [p - g * self.learning_rate for p, g in zip(params, grads)], data_losses

    def _train(self, params, x, y, order):
        """One epoch of SGD steps over ``order``; returns (new weights, mean mini-batch data losses ``(K,)``)."""
        params = list(params)
        params[0] = tf.transpose(params[0], (1, 0, 2))  # (K, fan_in, units) -> (fan_in, K, units)

        def step(idx, carry):
            params, total = carry
            params, data_losses = self._sgd_step(params, tf.gather(x, idx), tf.gather(y, idx))
            return params, total + data_losses

        (params, total), steps_per_epoch = run_minibatches(
            order, self.batch_size, step, (params, tf.zeros(params[1].shape[:1]))
        )
        params[0] = tf.transpose(params[0], (1, 0, 2))
        return params, total / tf.cast(steps_per_epoch, tf.float32)

    def _evaluate(self, params, x, y):
        product = self._first_product(tf.transpose(params[0], (1, 0, 2)), x)
        data_losses, pred = self._forward(product, list(params[1:]), y)
        return data_losses, accuracy(pred, y)


def train_stacked(
    models: Sequence[keras.Model],
    data,
    epochs: int = 30,
    batch_size: int = 10,
    learning_rate: float = 0.1,
    seed: int = 0,
    callbacks: Sequence[Sequence[keras.callbacks.Callback]] | None = None,
    device: str = "auto",
    max_bytes: int | None = None,
    max_group_size: int | None = None,
    lanes: int | None = None,
) -> list[keras.callbacks.History | NonFiniteLossError]:
    """Trains K same-architecture MLPs side by side with plain SGD; one result per model.

    The models (from `keras_initlab.models.build_mlp`, same sizes, activations,
    output and L2 coefficient; any initialization) are trained as `train` would
    train each alone with the default optimizer, ``keras.optimizers.SGD(learning_rate)``
    (plain SGD is the only optimizer here), the default loss (`default_loss`)
    plus each Dense kernel's L2 term, and the same ``seed``:

    - every model sees the same mini-batches in the same order (``epoch_orders(seed, ...)``),
      common random numbers across the models, so their differences are the
      initialization's alone (a paired comparison);
    - each model's weights, loss, L2 term and SGD update are its own; its
      weights end where ``train`` would take them, to float32 rounding.

    The weights of each model are copied into a stacked tensor (leading model
    axis, ``(K, fan_in, units)``) at the start and written back into the
    model's variables after every epoch, before its callbacks' ``on_epoch_end``,
    so callbacks see the model as trained so far (checkpoints, ``EarlyStopping``
    with ``restore_best_weights`` work as with `train`) and the trained models
    can be evaluated and saved as usual. Weights a callback changes during
    training are not read back. A single model is simply trained by `train`. The models are split into
    groups (`plan_groups`): on CPU one group per core (`parallel_lanes`), whose
    compiled epochs run at the same time in threads, since one compiled loop
    keeps about one core busy; groups of at most ``max_group_size``; and no more
    models in memory at once than fit the budget (`estimate_bytes`,
    `memory_budget`, or ``max_bytes``). Which group a model lands in does not
    change its trajectory.

    Per epoch each model's history gets ``train_loss`` (mean mini-batch data
    loss, without the L2 penalty), ``val_loss`` and ``val_accuracy``, as in `train`.

    Args:
        models: K Keras models of one architecture (a ValueError names what differs).
        data: a `keras_initlab.data.Dataset`.
        epochs, batch_size: positive ints.
        learning_rate: the SGD step size.
        seed: the shuffling seed, shared by all models.
        callbacks: ``None`` or K lists of Keras callbacks, one list per model; each
            list's epoch-level hooks get that model's logs, and its ``set_model`` that
            model. ``model.stop_training = True`` stops that model after the epoch.
        device: ``"auto"``, ``"cpu"`` or ``"gpu"``.
        max_bytes: overrides the memory budget of one wave of groups (bytes).
        max_group_size: most models in one compiled group; default
            `keras_initlab.training.planning.MAX_GROUP_SIZE` of the device (16 on CPU).
        lanes: groups trained at the same time; default `parallel_lanes` (the
            usable CPU cores; 1 on a GPU).

    Returns:
        One entry per model, in order: its ``keras.callbacks.History``, or a
        `NonFiniteLossError` (same message as `train`'s) when its loss became
        NaN or infinite. A failed model stops being reported (its weights are
        written back as they were after the failing epoch); the others go on,
        unaffected.
    """
    require_tensorflow("keras_initlab.train_stacked")
    check_schedule(epochs, batch_size, len(data.x_train), seed)
    learning_rate = check_number(learning_rate, "learning_rate", positive=True)
    arch = _architecture(models)
    if callbacks is not None:
        check_list(callbacks, "callbacks", min_len=len(models), max_len=len(models), what="lists of callbacks")
        for k, model_callbacks in enumerate(callbacks):
            check_list(model_callbacks, f"callbacks[{k}]", what="callbacks")
    max_bytes = check_optional_int(max_bytes, "max_bytes", minimum=1)
    max_group_size = check_optional_int(max_group_size, "max_group_size", minimum=1)
    lanes = check_optional_int(lanes, "lanes", minimum=1)
    if len(models) == 1:  # nothing to stack: the single-model trainer is the faster path
        try:
            return [train(models[0], data, epochs, batch_size, learning_rate, seed,
                          callbacks=None if callbacks is None else callbacks[0], device=device)]
        except NonFiniteLossError as e:
            return [e]
    device_name = resolve_device(device)
    lanes = parallel_lanes(device_name) if lanes is None else lanes
    waves = plan_groups(models[0], data, len(models), batch_size, device_name, max_bytes, lanes, max_group_size)
    compiled = _StackedEpoch(arch, batch_size, learning_rate)
    steps_per_epoch = len(data.x_train) // batch_size
    reporters = [
        EpochReporter(model, None if callbacks is None else callbacks[k], epochs, steps_per_epoch)
        for k, model in enumerate(models)
    ]
    results: list[keras.callbacks.History | NonFiniteLossError] = []
    with tf.device(device_name), ThreadPoolExecutor(max(len(wave) for wave in waves)) as pool:
        tensors = DeviceData.place(data, models[0])
        start = 0
        for wave in waves:
            size = sum(wave)
            orders = epoch_orders(seed, epochs, len(data.x_train))  # every wave sees the same stream
            results += _train_wave(compiled, wave, reporters[start:start + size], tensors, orders, pool, device_name)
            start += size
    return results


def _train_wave(compiled, sizes, reporters, tensors, orders, pool, device_name):
    """Trains one wave: groups of ``sizes`` models, each group one stacked graph, the groups'
    epochs running concurrently on ``pool``; callbacks run in this thread, model by model in order.
    Returns the models' results in order."""
    layers = [_dense_layers(reporter.model) for reporter in reporters]
    starts = [sum(sizes[:g]) for g in range(len(sizes))]
    params = [
        [tf.stack([getattr(model_layers[i], name).value for model_layers in layers[start:start + size]])
         for i in range(len(layers[0])) for name in ("kernel", "bias")]
        for start, size in zip(starts, sizes)
    ]
    results: list = [reporter.history for reporter in reporters]
    active = list(range(len(reporters)))
    group_of = [g for g, size in enumerate(sizes) for _ in range(size)]

    def epoch_of(group: int, order, members: list[int]):
        """One epoch of one group; writes the new weights of its ``members`` (still training) back."""
        with tf.device(device_name):  # the device scope is per thread
            new, train_losses = compiled.train(params[group], tensors.x_train, tensors.y_train, order)
            val_losses, val_accuracies = compiled.evaluate(new, tensors.x_val, tensors.y_val)
            _write_back(new, {k - starts[group]: layers[k] for k in members})
            return new, [t.numpy() for t in (train_losses, val_losses, val_accuracies)]

    for k in active:
        reporters[k].begin()
    for epoch, order in enumerate(orders):
        for k in active:
            reporters[k].epoch_begin(epoch)
        order = tf.constant(order)
        members = {g: [k for k in active if group_of[k] == g] for g in sorted({group_of[k] for k in active})}
        # A group whose models all stopped rests; callbacks then see each model as trained so far.
        outcomes = dict(zip(members, pool.map(lambda g: epoch_of(g, order, members[g]), members)))
        stats = {}
        for g, (new, values) in outcomes.items():
            params[g] = new
            for i in range(sizes[g]):
                stats[starts[g] + i] = [float(v[i]) for v in values]
        for k in list(active):
            try:
                stop = reporters[k].epoch_end(epoch, *stats[k])
            except NonFiniteLossError as error:  # this model drops out; the others go on
                results[k] = error
                active.remove(k)
                continue
            if stop:
                reporters[k].end()
                active.remove(k)
        if not active:
            break
    for k in active:
        reporters[k].end()
    return results


def _write_back(params, layers: Mapping[int, list[keras.layers.Dense]]) -> None:
    """Copies slices of the stacked weights into models' Dense layers: ``{index in the stack: layers}``."""
    if not layers:
        return
    parts = [tf.unstack(p) for p in params]  # one op per tensor, not one slice per model
    for k, model_layers in layers.items():
        for i, layer in enumerate(model_layers):
            layer.kernel.assign(parts[2 * i][k])
            layer.bias.assign(parts[2 * i + 1][k])
