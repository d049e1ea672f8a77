"""Fast training of one model: a whole epoch of mini-batch steps in one XLA-compiled call.

At mini-batch 10 the cost of a step is overhead, not arithmetic, so `train`
keeps the data on the device, draws each epoch's shuffled order up front (NumPy,
seeded) and runs every step of the epoch inside one ``tf.function(jit_compile=True)``
loop. Each step is the ordinary Keras one: forward pass, loss plus the model's
regularization losses, gradients, ``optimizer.apply``. Runs of one architecture
(a Sequential or Functional model of Keras' layers with the same config but for
names and initializers; the same loss, optimizer config and batch size) share
one compiled loop: tracing and XLA compilation, ~0.5-1 s on a CPU, are paid once
per architecture (and thread training one at the same time), and each run ends bit for
bit where a loop of its own ends.

>>> from keras_initlab import build_mlp, load_dataset, train
>>> data = load_dataset("mnist-10k")
>>> model = build_mlp([784, 30, 10], l2_lambda=5.0, n_train=data.n_train, seed=0)
>>> history = train(model, data, epochs=3, batch_size=10, learning_rate=0.1, seed=0)
>>> history.history["val_accuracy"][-1] > 0.85
True
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import keras
import tensorflow as tf

from keras_initlab.backend import require_tensorflow
from keras_initlab.checks import check_number, fail
from keras_initlab.diagnostics import model_input
from keras_initlab.models import all_layers, default_loss
from keras_initlab.training.driver import (
    DeviceData,
    EpochReporter,
    accuracy,
    check_schedule,
    epoch_orders,
    resolve_device,
    run_minibatches,
)
from keras_initlab.watch import LayerWatch, ModelProbe, check_watch

_CONVOLUTIONS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Conv2DTranspose,
)


class _CompiledEpoch:
    """The compiled per-epoch training loop and the validation pass of one model and its optimizer.

    Runs of one architecture share one (`_epoch_loop`): each epoch `load` copies a run's weights and optimizer
    state into this model's and optimizer's variables, and `store` copies them back, so the run's own model holds
    its weights between epochs (for the callbacks) while the same traced and XLA-compiled program trains it.
    """

    def __init__(
        self,
        model: keras.Model,
        loss: Callable,
        optimizer: keras.optimizers.Optimizer,
        batch_size: int,
        jit_compile: bool,
    ):
        self.model, self.loss, self.optimizer, self.batch_size = model, loss, optimizer, batch_size
        self.train = tf.function(self._train, jit_compile=jit_compile, reduce_retracing=True)
        self.evaluate = tf.function(self._evaluate, jit_compile=jit_compile)
        self.lock = threading.Lock()  # held by the run training in a shared loop's variables
        self._assign = tf.function(_assign, autograph=False)  # one call, not an eager assign per variable
        self._probe: ModelProbe | None = None

    def probe(self, loss: Callable | None) -> ModelProbe:
        """The compiled `keras_initlab.watch` statistics pass of this loop's model (made once, with ``loss`` or the
        loop's own)."""
        loss = loss or self.loss
        if self._probe is None or self._probe.loss is not loss:
            self._probe = ModelProbe(self.model, loss)
        return self._probe

    def load(self, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
        """The state of ``model`` (weights, seed states) and ``optimizer`` into this loop's variables."""
        if model is not self.model:
            self._copy(model.variables + optimizer.variables, self.model.variables + self.optimizer.variables)

    def store(self, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
        """This loop's variables back into ``model`` and ``optimizer``."""
        if model is not self.model:
            self._copy(self.model.variables + self.optimizer.variables, model.variables + optimizer.variables)

    def _copy(self, sources: Sequence, targets: Sequence) -> None:
        self._assign([v.value for v in sources], [v.value for v in targets])

    def _losses(self, x, y, training):
        """(data loss, data loss + regularization losses, predictions) on one batch."""
        pred = self.model(x, training=training)
        data_loss = keras.ops.mean(self.loss(y, pred))
        total = data_loss
        for penalty in self.model.losses:
            total = total + penalty
        return data_loss, total, pred

    def _train(self, x, y, order):
        """One epoch of SGD steps over ``order``; returns the mean mini-batch data loss."""
        variables = self.model.trainable_variables

        def step(idx, total):
            with tf.GradientTape() as tape:
                data_loss, loss, _ = self._losses(tf.gather(x, idx), tf.gather(y, idx), training=True)
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            return total + data_loss

        total, steps_per_epoch = run_minibatches(order, self.batch_size, step, tf.constant(0.0))
        return total / tf.cast(steps_per_epoch, tf.float32)

    def _evaluate(self, x, y):
        data_loss, _, pred = self._losses(x, y, training=False)
        return data_loss, accuracy(pred, y)


def _assign(sources: list[tf.Variable], targets: list[tf.Variable]) -> None:
    """Each target variable takes its source's value (in one graph: ~3 ms for deep-relu's 124 variables, against
    ~10 ms assigned one by one)."""
    for source, target in zip(sources, targets, strict=True):
        target.assign(source)


_SHARED: OrderedDict[tuple, list[_CompiledEpoch]] = OrderedDict()
_SHARED_LOCK = threading.Lock()  # held while a thread picks (or makes) its loop
MAX_SHARED_LOOPS = 8
"""Compiled loops kept for later runs of their architecture, one per thread that trained one at the same time (each
holds a copy of one run's weights and optimizer state); the least recently used architecture's go first."""


@contextlib.contextmanager
def _epoch_loop(
    model: keras.Model,
    loss: Callable,
    optimizer: keras.optimizers.Optimizer,
    batch_size: int,
    jit_compile: bool,
    device: str,
) -> Iterator[_CompiledEpoch]:
    """The compiled loop that trains ``model`` while the context lasts: a free one of its architecture's, else a
    new one that later runs of the architecture share.

    A shared loop trains a copy of the architecture's first model (`keras.models.clone_model`) with a copy of its
    optimizer (``from_config``): the same layers, regularizers, loss, optimizer config, batch size and device give
    the same program, so a run ends exactly where its own loop would take it (XLA compiles once per architecture
    instead of once per run, ~0.5-1 s on the CPU). Threads that train runs of one architecture at the same time
    (lanes) each get a loop of their own, compiled once and kept. Where the config may not say everything about the
    computation (a subclassed model, a layer that is not Keras' own, a ``Lambda``), the model gets a loop of its own.
    """
    structure = _structure(model)
    if structure is None:
        yield _CompiledEpoch(model, loss, optimizer, batch_size, jit_compile)
        return
    key = (
        structure,
        tuple((tuple(v.shape), v.dtype, v.trainable) for v in model.variables),
        _same(loss),
        _same(optimizer),
        batch_size,
        jit_compile,
        device,
    )
    with _SHARED_LOCK:
        loops = _SHARED.setdefault(key, [])
        _SHARED.move_to_end(key)
        loop = next((loop for loop in loops if loop.lock.acquire(blocking=False)), None)
        if loop is None:  # every loop of the architecture trains on another thread: one more
            twin = keras.models.clone_model(model)
            twin_optimizer = type(optimizer).from_config(optimizer.get_config())
            twin_optimizer.build(twin.trainable_variables)
            loop = _CompiledEpoch(twin, loss, twin_optimizer, batch_size, jit_compile)
            loop.lock.acquire()
            loops.append(loop)
            while sum(map(len, _SHARED.values())) > MAX_SHARED_LOOPS and len(_SHARED) > 1:
                _SHARED.popitem(last=False)  # loops in use are kept by their threads until they end
    try:
        yield loop
    finally:
        loop.lock.release()


def _same(thing):
    """What makes two losses or optimizers compute the same: for Keras' own classes their class and config but for
    the name (a spec makes a new loss object per run); any other callable is itself."""
    if isinstance(thing, (keras.losses.Loss, keras.optimizers.Optimizer)) and type(thing).__module__.startswith(
        "keras."
    ):
        return type(thing), json.dumps({**thing.get_config(), "name": None}, sort_keys=True, default=repr)
    return thing


def _structure(model: keras.Model) -> str | None:
    """The computation a Sequential or Functional ``model`` of Keras' own layers does, as JSON: its config without
    names (a reference to a layer is its position) and initializers. ``None`` for any other model."""
    if type(model).__name__ not in ("Sequential", "Functional") or not type(model).__module__.startswith("keras."):
        return None
    for layer in all_layers(model):
        if not type(layer).__module__.startswith("keras.") or isinstance(layer, keras.layers.Lambda):
            return None
    return json.dumps(_anonymous(model.get_config()), sort_keys=True, default=repr)


def _anonymous(config: dict) -> dict:
    layers = config.get("layers", [])
    position = {entry.get("name", entry["config"].get("name")): i for i, entry in enumerate(layers)}

    def refs(value):  # ["dense_1", node, tensor] triples name layers; so does a tensor's keras_history
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and value[0] in position:
            return [position[value[0]], *value[1:]]
        if isinstance(value, list):
            return [refs(v) for v in value]
        if isinstance(value, dict):
            return {k: refs(v) for k, v in value.items()}
        return value

    def entry(layer: dict) -> dict:
        inner = {k: v for k, v in layer["config"].items() if k != "name" and not k.endswith("_initializer")}
        return {
            **{k: refs(v) for k, v in layer.items() if k not in ("name", "config")},
            "config": _anonymous(inner) if "layers" in inner else inner,
        }

    return {
        **{k: refs(v) for k, v in config.items() if k not in ("name", "layers")},
        "layers": [entry(layer) for layer in layers],
    }


def train(
    model: keras.Model,
    data,
    epochs: int = 30,
    batch_size: int = 10,
    learning_rate: float = 0.1,
    seed: int = 0,
    optimizer: keras.optimizers.Optimizer | None = None,
    loss: Callable | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    device: str = "auto",
    jit_compile: bool | str = "auto",
    watch: LayerWatch | None = None,
) -> keras.callbacks.History:
    """Trains ``model`` on ``data`` with mini-batch SGD; returns Keras' ``History``.

    Each epoch visits the training examples in a fresh order (``epoch_orders(seed, ...)``)
    in ``n_train // batch_size`` mini-batches (a remainder smaller than one batch
    is left out of that epoch), then evaluates the whole validation set. The
    history holds, per epoch, ``train_loss`` (mean mini-batch loss during the
    epoch), ``val_loss`` and ``val_accuracy``. Both losses are the data loss
    alone (e.g. the cross-entropy): the regularization terms act on the
    gradients but are left out of the reported values, unlike Keras' ``fit``,
    so that losses compare across initializations whose weight norms differ (and
    computing the penalty's value at every step would cost ~30% of the step).

    Args:
        model: a Keras model whose input shape holds one image (it is reshaped).
        data: a `keras_initlab.data.Dataset` (``x_train``, ``y_train``, ``x_val``, ``y_val``).
        epochs, batch_size: positive ints.
        learning_rate: for the default optimizer, plain SGD.
        seed: the shuffling seed.
        optimizer: any Keras optimizer (then ``learning_rate`` is not used).
        loss: ``loss(y_true_labels, y_pred)`` per example; default `default_loss(model)`.
        callbacks: ordinary Keras callbacks (epoch-level hooks are called;
            ``model.stop_training = True`` stops after the current epoch).
        device: ``"auto"``, ``"cpu"`` or ``"gpu"``.
        jit_compile: compile the epoch with XLA; ``"auto"`` (as Keras' ``compile``) does
            except for a model with convolutions on the CPU: XLA's CPU convolutions are
            several times slower than TensorFlow's own kernels (measured in
            ``scripts/bench_models.py``), while for Dense layers XLA is the faster.
        watch: a `keras_initlab.watch.LayerWatch`: its per-layer statistics join the logs of the epochs it is
            due (``layers/layer{k}/{stat}``), measured in the same compiled program for runs of one architecture.

    Raises:
        BackendError: under a Keras backend other than TensorFlow (`keras_initlab.backend`).
        TypeError, ValueError: for a bad schedule (``epochs``, ``batch_size``) or device.
        NonFiniteLossError: when a loss becomes NaN or infinite; names the epoch and the model.
    """
    require_tensorflow("keras_initlab.train")
    check_schedule(epochs, batch_size, len(data.x_train), seed)
    device_name = resolve_device(device)
    if jit_compile == "auto":
        jit_compile = device_name != "/CPU:0" or not any(
            isinstance(layer, _CONVOLUTIONS) for layer in all_layers(model)
        )
    elif not isinstance(jit_compile, bool):
        fail(TypeError, "jit_compile", 'True, False or "auto"', jit_compile)
    optimizer = optimizer or keras.optimizers.SGD(check_number(learning_rate, "learning_rate", positive=True))
    check_watch(watch)
    reporter = EpochReporter(model, callbacks, epochs, len(data.x_train) // batch_size)
    with tf.device(device_name):
        optimizer.build(model.trainable_variables)
        tensors = DeviceData.place(data, model)
        if watch is not None:
            probe_x, probe_y = tf.constant(model_input(model, watch.x)), tf.constant(watch.y, tf.int32)
        with _epoch_loop(model, loss or default_loss(model), optimizer, batch_size, jit_compile, device_name) as loop:
            reporter.begin()
            for epoch, order in enumerate(epoch_orders(seed, epochs, len(data.x_train))):
                reporter.epoch_begin(epoch)
                loop.load(model, optimizer)  # as the callbacks left them
                order = tf.constant(order)
                if watch is not None and epoch == 0:
                    probe = loop.probe(watch.loss)
                    probe.start()  # the run's initial kernels, for the first update ratio
                    # The loop traced here, the probe then on a thread while XLA compiles the loop and it trains.
                    loop.train.get_concrete_function(tensors.x_train, tensors.y_train, order)
                    probe.prepare(probe_x, probe_y)
                train_loss = float(loop.train(tensors.x_train, tensors.y_train, order))
                loop.store(model, optimizer)
                val_loss, val_accuracy = (float(v) for v in loop.evaluate(tensors.x_val, tensors.y_val))
                watched = None
                if watch is not None and watch.due(epoch):  # the loop's model holds this run's weights until `load`
                    watched = loop.probe(watch.loss).measure(probe_x, probe_y)
                if reporter.epoch_end(epoch, train_loss, val_loss, val_accuracy, watched):
                    break
            reporter.end()
    return reporter.history
