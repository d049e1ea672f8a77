"""Many identical-shaped MLPs trained side by side in one compiled graph.

A comparison is many small models (schemes x seeds) that differ only in their
initial weights. At mini-batch 10 each step of one model is overhead, not
arithmetic, so `train_stacked` holds the weights of K models with a leading
model axis, ``(K, fan_in, units)``, and runs one epoch of all K as one
XLA-compiled loop: the first layer of all K models is one matrix product
``(batch, fan_in) x (fan_in, K * units)``.

Every model sees the mini-batches `keras_initlab.training.train` with its
seed would show it: the models of one seed the same ones in the same order
(common random numbers: differences between them come from the initialization
alone, a paired comparison), each with its own loss, its own L2 term and plain
SGD, so each model follows the trajectory it would follow alone under ``train``
(to float32 rounding). Models of several seeds train in one group: each seed's
models share the first layer's product on that seed's mini-batch.

>>> from keras_initlab import build_mlp, load_dataset
>>> data = load_dataset("mnist-10k")
>>> runs = [(s, seed) for seed in (0, 1, 2) for s in ("nielsen-default", "nielsen-large")]
>>> models = [build_mlp([784, 30, 10], scheme=s, l2_lambda=5.0, n_train=data.n_train, seed=seed)
...           for s, seed in runs]
>>> histories = train_stacked(models, data, epochs=3, batch_size=10, learning_rate=0.1,
...                           seed=[seed for _, seed in runs])
>>> [len(h.history["val_accuracy"]) for h in histories]
[3, 3, 3, 3, 3, 3]
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import tensorflow as tf

from keras_initlab.backend import require_tensorflow
from keras_initlab.checks import check_ints, check_list, check_number, check_optional_int
from keras_initlab.models import as_model_input
from keras_initlab.training.driver import (
    DeviceData,
    EpochReporter,
    NonFiniteLossError,
    accuracy,
    check_schedule,
    epoch_orders,
    resolve_device,
    run_minibatches,
)
from keras_initlab.training.planning import parallel_lanes, plan_groups
from keras_initlab.training.single import train
from keras_initlab.training.stackable import Architecture, architecture, dense_layers
from keras_initlab.watch import LayerWatch, check_watch, layer_statistics


class _StackedEpoch:
    """The compiled per-epoch loop and validation pass of K stacked models.

    The weights are plain tensors, ``[kernel_1, bias_1, kernel_2, ...]`` with a
    leading model axis: kernels ``(K, fan_in, units)``, biases ``(K, units)``.
    The models of a group come in *segments*: consecutive models that share a
    seed, hence a data order (``counts``: the segment sizes). Inside a call the
    first kernel of a segment of m models is laid out ``(fan_in, m * units)``, so
    the first layer of the segment is one matrix product
    ``(batch, fan_in) x (fan_in, m * units)`` on the segment's own mini-batch
    (and its gradient one ``(fan_in, batch) x (batch, m * units)``), not m small
    ones; a group of one seed is one product. Gradients come from autodiff of the
    sum of the K losses, which is model k's own gradient for model k's slice: the
    models never mix.
    """

    def __init__(self, arch: Architecture, batch_size: int, learning_rate: float):
        self.activations = [layer.activation for layer in arch.layers]
        self.loss, self.l2 = arch.loss, arch.l2
        self.batch_size, self.learning_rate = batch_size, learning_rate
        # No AutoGraph: the loop is an explicit tf.while_loop and every Python branch and loop here is over
        # static values; converting the source would cost ~0.8 s of Python per trace, most of a trace.
        self.train = tf.function(self._train, jit_compile=True, autograph=False)
        self.evaluate = tf.function(self._evaluate, jit_compile=True, autograph=False)
        self.activation_names = arch.activations
        # Not XLA: compiling the pass with its gradient took ~1.4 s per shape of group in every process, for no
        # faster a pass (7-8 ms either way for a group of 3 nielsen models on 1,000 images, 2-core CPU). Nor fused with
        # the validation pass, whose forward part it repeats: that pass's numbers would then move in the last bit.
        self.statistics = tf.function(self._statistics, autograph=False)
        self.watched: list[str] = []  # the rows of what `statistics` returns: set when it is traced

    def _forward(self, z, params, y):
        """Per-model data losses ``(K,)`` and outputs ``(K, n, classes)``.

        ``z`` is the first layer's product ``(n, K, units)`` (without the bias);
        ``params`` the weights after the first kernel (first bias, then kernel,
        bias, ...); ``y`` each model's labels ``(K, n)``.
        """
        bias = params[0]
        k = bias.shape[0]
        z = tf.transpose(z, (1, 0, 2)) + bias[:, None, :]
        for i in range(len(self.activations) - 1):
            kernel, bias = params[2 * i + 1], params[2 * i + 2]
            z = tf.matmul(self.activations[i](z), kernel) + bias[:, None, :]
        # The output activation and the loss see a 2-D (K * n, classes) tensor, exactly like one model's
        # Dense output: Keras' cross-entropies then take the same (logits or probabilities) path.
        n, classes = tf.shape(z)[1], z.shape[2]
        pred = self.activations[-1](tf.reshape(z, (-1, classes)))
        per_example = self.loss(tf.reshape(y, (-1,)), pred)
        return tf.reduce_mean(tf.reshape(per_example, (k, n)), axis=1), tf.reshape(pred, (k, n, classes))

    def _sgd_step(self, params, x, y, batches, counts):
        """One SGD step of all K models, segment s on mini-batch ``batches[s]``; returns (new weights,
        data losses ``(K,)``). ``params``: the segments' first kernels ``(fan_in, m * units)``, then the rest."""
        segments = len(counts)
        with tf.GradientTape() as tape:
            tape.watch(params)
            products, labels = [], []
            for s, m in enumerate(counts):
                products.append(tf.reshape(tf.matmul(tf.gather(x, batches[s]), params[s]), (self.batch_size, m, -1)))
                labels.append(tf.tile(tf.gather(y, batches[s])[None], [m, 1]))
            data_losses, _ = self._forward(tf.concat(products, 1), params[segments:], tf.concat(labels, 0))
            loss = tf.reduce_sum(data_losses)  # d(sum)/d(model k's weights) = d(loss k)/d(model k's weights)
            if self.l2:
                for kernel in params[:segments] + params[segments + 1 :: 2]:
                    loss += self.l2 * tf.reduce_sum(tf.square(kernel))
        grads = tape.gradient(loss, params)
        return [p - g * self.learning_rate for p, g in zip(params, grads, strict=True)], data_losses

    def _train(self, params, x, y, orders, counts):
        """One epoch of SGD steps, segment s (``counts[s]`` models) over ``orders[s]``; returns (new weights,
        mean mini-batch data losses ``(K,)``)."""
        fan_in = params[0].shape[1]
        kernels = [
            tf.reshape(tf.transpose(part, (1, 0, 2)), (fan_in, -1))  # (m, fan_in, units) -> (fan_in, m * units)
            for part in tf.split(params[0], counts)
        ]

        def step(batches, carry):
            params, total = carry
            params, data_losses = self._sgd_step(params, x, y, batches, counts)
            return params, total + data_losses

        (params, total), steps_per_epoch = run_minibatches(
            orders, self.batch_size, step, ([*kernels, *params[1:]], tf.zeros(params[1].shape[:1]))
        )
        units = params[len(counts)].shape[1]
        first = tf.concat(
            [
                tf.transpose(tf.reshape(kernel, (fan_in, m, units)), (1, 0, 2))
                for kernel, m in zip(params[: len(counts)], counts, strict=True)
            ],
            0,
        )
        return [first, *params[len(counts) :]], total / tf.cast(steps_per_epoch, tf.float32)

    def _evaluate(self, params, x, y):
        k, fan_in, units = params[0].shape
        product = tf.matmul(x, tf.reshape(tf.transpose(params[0], (1, 0, 2)), (fan_in, k * units)))
        data_losses, pred = self._forward(
            tf.reshape(product, (-1, k, units)), list(params[1:]), tf.tile(y[None], [k, 1])
        )
        return data_losses, accuracy(pred, y)

    def _statistics(self, params, previous, x, y):
        """The `keras_initlab.watch` statistics of all K models on the probe batch ``(x, y)``, in one pass, the
        update ratios against the kernels ``previous``: ``(statistics, K)``, the rows named by ``watched``."""
        k, fan_in, units = params[0].shape
        kernels = list(params[0::2])
        with tf.GradientTape() as tape:
            tape.watch(kernels)
            product = tf.matmul(x, tf.reshape(tf.transpose(params[0], (1, 0, 2)), (fan_in, k * units)))
            z = tf.transpose(tf.reshape(product, (-1, k, units)), (1, 0, 2)) + params[1][:, None, :]
            signals = []
            for i, activation in enumerate(self.activations):
                if i:
                    z = tf.matmul(signals[-1][1], params[2 * i]) + params[2 * i + 1][:, None, :]
                signals.append((z, activation(z)))
            per_example = self.loss(
                tf.reshape(tf.tile(y[None], [k, 1]), (-1,)), tf.reshape(signals[-1][1], (-1, signals[-1][1].shape[2]))
            )
            loss = tf.reduce_sum(tf.reduce_mean(tf.reshape(per_example, (k, -1)), axis=1))  # model k's own gradients
        grads = tape.gradient(loss, kernels)
        self.watched, stats = layer_statistics(
            [
                (z, a, name, grad, kernel, old)
                for (z, a), name, grad, kernel, old in zip(
                    signals, self.activation_names, grads, kernels, previous, strict=True
                )
            ]
        )
        return stats


def train_stacked(
    models: Sequence[keras.Model],
    data,
    epochs: int = 30,
    batch_size: int = 10,
    learning_rate: float = 0.1,
    seed: int | Sequence[int] = 0,
    callbacks: Sequence[Sequence[keras.callbacks.Callback]] | None = None,
    device: str = "auto",
    max_bytes: int | None = None,
    max_group_size: int | None = None,
    lanes: int | None = None,
    watch: LayerWatch | None = None,
) -> list[keras.callbacks.History | NonFiniteLossError]:
    """Trains K same-architecture MLPs side by side with plain SGD; one result per model.

    The models (from `keras_initlab.models.build_mlp`, same sizes, activations,
    output and L2 coefficient; any initialization) are trained as `train` would
    train each alone with the default optimizer, ``keras.optimizers.SGD(learning_rate)``
    (plain SGD is the only optimizer here), the default loss (`default_loss`)
    plus each Dense kernel's L2 term, and its seed:

    - model k sees the mini-batches ``train`` with ``seed[k]`` (or the one ``seed``)
      would show it (``epoch_orders(seed, ...)``): models of one seed see the same
      mini-batches in the same order, common random numbers, so their differences
      are the initialization's alone (a paired comparison);
    - each model's weights, loss, L2 term and SGD update are its own; its
      weights end where ``train`` would take them, to float32 rounding.

    The weights of each model are copied into a stacked tensor (leading model
    axis, ``(K, fan_in, units)``) at the start and written back into the
    model's variables after every epoch, before its callbacks' ``on_epoch_end``,
    so callbacks see the model as trained so far (checkpoints, ``EarlyStopping``
    with ``restore_best_weights`` work as with `train`) and the trained models
    can be evaluated and saved as usual. Weights a callback changes during
    training are not read back. A single model is simply trained by `train`. The models are split into
    groups (`plan_groups`), the models of one seed side by side: on CPU one group per core (`parallel_lanes`), whose
    compiled epochs run at the same time in threads, since one compiled loop
    keeps about one core busy; groups of at most ``max_group_size``; and no more
    models in memory at once than fit the budget (`estimate_bytes`,
    `memory_budget`, or ``max_bytes``). Which group a model lands in does not
    change its trajectory. The compiled loop is made once per architecture,
    batch size and learning rate (and traced once per shape of group), whatever the seeds.

    Per epoch each model's history gets ``train_loss`` (mean mini-batch data
    loss, without the L2 penalty), ``val_loss`` and ``val_accuracy``, as in `train`.

    Args:
        models: K Keras models of one architecture (a ValueError names what differs).
        data: a `keras_initlab.data.Dataset`.
        epochs, batch_size: positive ints.
        learning_rate: the SGD step size.
        seed: the shuffling seed: one int >= 0 shared by all models, or a list of K, one per model.
        callbacks: ``None`` or K lists of Keras callbacks, one list per model; each
            list's epoch-level hooks get that model's logs, and its ``set_model`` that
            model. ``model.stop_training = True`` stops that model after the epoch.
        device: ``"auto"``, ``"cpu"`` or ``"gpu"``.
        max_bytes: overrides the memory budget of one wave of groups (bytes).
        max_group_size: most models in one compiled group; default
            `keras_initlab.training.planning.MAX_GROUP_SIZE` of the device (16 on CPU).
        lanes: groups trained at the same time; default `parallel_lanes` (the
            usable CPU cores; 1 on a GPU).
        watch: a `keras_initlab.watch.LayerWatch` (its ``loss`` is not used: the models' own is): its
            per-layer statistics of every model of a group, measured in one compiled pass, join the
            models' logs of the epochs it is due.

    Returns:
        One entry per model, in order: its ``keras.callbacks.History``, or a
        `NonFiniteLossError` (same message as `train`'s) when its loss became
        NaN or infinite. A failed model stops being reported (its weights are
        written back as they were after the failing epoch); the others go on,
        unaffected.
    """
    require_tensorflow("keras_initlab.train_stacked")
    arch = architecture(models)
    seeds = _seeds(seed, len(models))
    check_schedule(epochs, batch_size, len(data.x_train), seeds[0])
    learning_rate = check_number(learning_rate, "learning_rate", positive=True)
    if callbacks is not None:
        check_list(callbacks, "callbacks", min_len=len(models), max_len=len(models), what="lists of callbacks")
        for k, model_callbacks in enumerate(callbacks):
            check_list(model_callbacks, f"callbacks[{k}]", what="callbacks")
    max_bytes = check_optional_int(max_bytes, "max_bytes", minimum=1)
    max_group_size = check_optional_int(max_group_size, "max_group_size", minimum=1)
    lanes = check_optional_int(lanes, "lanes", minimum=1)
    check_watch(watch)
    if len(models) == 1:  # nothing to stack: the single-model trainer is the faster path
        try:
            return [
                train(
                    models[0],
                    data,
                    epochs,
                    batch_size,
                    learning_rate,
                    seeds[0],
                    callbacks=None if callbacks is None else callbacks[0],
                    device=device,
                    watch=watch,
                )
            ]
        except NonFiniteLossError as e:
            return [e]
    device_name = resolve_device(device)
    lanes = parallel_lanes(device_name) if lanes is None else lanes
    waves = plan_groups(models[0], data, len(models), batch_size, device_name, max_bytes, lanes, max_group_size)
    compiled = _compiled_epoch(arch, batch_size, learning_rate)
    steps_per_epoch = len(data.x_train) // batch_size
    reporters = [
        EpochReporter(model, None if callbacks is None else callbacks[k], epochs, steps_per_epoch)
        for k, model in enumerate(models)
    ]
    by_seed = iter(sorted(range(len(models)), key=lambda k: seeds[k]))  # the models of one seed side by side
    results: dict[int, keras.callbacks.History | NonFiniteLossError] = {}
    with tf.device(device_name), ThreadPoolExecutor(max(len(wave) for wave in waves)) as pool:
        tensors = DeviceData.place(data, models[0])
        probe = (
            None
            if watch is None
            else (watch, tf.constant(as_model_input(models[0], watch.x)), tf.constant(watch.y, tf.int32))
        )
        for wave in waves:
            groups = [_segments([next(by_seed) for _ in range(size)], seeds) for size in wave]
            results.update(_train_wave(compiled, groups, reporters, seeds, tensors, epochs, pool, device_name, probe))
    return [results[k] for k in range(len(models))]


def _seeds(seed, k: int) -> list[int]:
    """One seed per model: ``seed`` repeated (checked by `check_schedule`), or a list of ``k`` ints >= 0."""
    if isinstance(seed, Sequence) and not isinstance(seed, str):
        return check_ints(seed, "seed", minimum=0, min_len=k, max_len=k)
    return [seed] * k


_COMPILED: dict[tuple, _StackedEpoch] = {}


def _compiled_epoch(arch: Architecture, batch_size: int, learning_rate: float) -> _StackedEpoch:
    """The compiled epoch of ``arch`` (sizes, activations, L2), made once per process and reused: a comparison's
    groups, waves and later calls trace it once per shape of group (segment sizes), not once per seed or call."""
    key = (tuple(arch.sizes), tuple(arch.activations), arch.l2, batch_size, learning_rate)
    if key not in _COMPILED:
        _COMPILED[key] = _StackedEpoch(arch, batch_size, learning_rate)
    return _COMPILED[key]


def _segments(group: list[int], seeds: list[int]) -> list[list[int]]:
    """The model indices of ``group`` (the models of one seed side by side) in segments of one seed, larger
    segments first: groups of one shape (e.g. 2 + 1 models) then share one trace of the compiled epoch."""
    segments = [list(run) for _, run in itertools.groupby(group, key=lambda k: seeds[k])]
    return sorted(segments, key=len, reverse=True)


def _train_wave(compiled, segmented, reporters, seeds, tensors, epochs, pool, device_name, probe):
    """Trains one wave: groups of models, each given as its `_segments` of model indices, each group one
    stacked graph, the groups' epochs running concurrently on ``pool``; callbacks run in this thread, model
    by model in order. ``probe``: ``None`` or ``(LayerWatch, x, y)``, the statistics measured on each group
    after the epochs it is due. Returns ``{model index: result}``."""
    groups = [[k for segment in segments for k in segment] for segments in segmented]
    counts = [tuple(map(len, segments)) for segments in segmented]
    segment_seeds = [[seeds[segment[0]] for segment in segments] for segments in segmented]
    members = [k for group in groups for k in group]
    layers = {k: dense_layers(reporters[k].model) for k in members}
    params = [
        [
            tf.stack([getattr(layers[k][i], name).value for k in group])
            for i in range(len(layers[group[0]]))
            for name in ("kernel", "bias")
        ]
        for group in groups
    ]
    streams = {s: epoch_orders(s, epochs, len(tensors.x_train)) for s in sorted({seeds[k] for k in members})}
    results: dict = {k: reporters[k].history for k in members}
    active = list(members)
    watched_kernels = [group_params[0::2] for group_params in params]  # each group's, at its last measurement

    def epoch_of(g: int, epoch: int, orders: dict, training: list[int]):
        """One epoch of group ``g``; writes the new weights of its ``training`` models back. Returns the new
        weights, the losses and accuracies, and the watched statistics (per model of the group) or ``None``."""
        with tf.device(device_name):  # the device scope is per thread
            order = tf.constant(np.stack([orders[s] for s in segment_seeds[g]]))
            new, train_losses = compiled.train(params[g], tensors.x_train, tensors.y_train, order, counts[g])
            val_losses, val_accuracies = compiled.evaluate(new, tensors.x_val, tensors.y_val)
            _write_back(new, {i: layers[k] for i, k in enumerate(groups[g]) if k in training})
            watched = None
            if probe is not None and probe[0].due(epoch):
                values = compiled.statistics(new, watched_kernels[g], probe[1], probe[2]).numpy()
                watched = [dict(zip(compiled.watched, column.tolist(), strict=True)) for column in values.T]
                watched_kernels[g] = new[0::2]
            return new, [t.numpy() for t in (train_losses, val_losses, val_accuracies)], watched

    for k in active:
        reporters[k].begin()
    for epoch in range(epochs):
        orders = {s: next(stream) for s, stream in streams.items()}  # every seed's stream advances every epoch
        for k in active:
            reporters[k].epoch_begin(epoch)
        # A group whose models all stopped rests; callbacks then see each model as trained so far.
        busy = [g for g, group in enumerate(groups) if any(k in active for k in group)]
        stats, watched = {}, {}
        for g, (new, values, group_watched) in zip(
            busy, pool.map(functools.partial(epoch_of, epoch=epoch, orders=orders, training=active), busy), strict=True
        ):
            params[g] = new
            for i, k in enumerate(groups[g]):
                stats[k] = [float(v[i]) for v in values]
                watched[k] = None if group_watched is None else group_watched[i]
        for k in sorted(active):
            try:
                stop = reporters[k].epoch_end(epoch, *stats[k], watched[k])
            except NonFiniteLossError as error:  # this model drops out; the others go on
                results[k] = error
                active.remove(k)
                continue
            if stop:
                reporters[k].end()
                active.remove(k)
        if not active:
            break
    for k in sorted(active):
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
