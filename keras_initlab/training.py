"""Fast training of one model: a whole epoch of mini-batch steps in one XLA-compiled call.

At mini-batch 10 the cost of a step is overhead, not arithmetic, so `train`
keeps the data on the device, draws each epoch's shuffled order up front (NumPy,
seeded) and runs every step of the epoch inside one ``tf.function(jit_compile=True)``
loop. Each step is the ordinary Keras one: forward pass, loss plus the model's
regularization losses, gradients, ``optimizer.apply``.

>>> from keras_initlab import build_mlp, load_dataset, train
>>> data = load_dataset("mnist-10k")
>>> model = build_mlp([784, 30, 10], l2_lambda=5.0, n_train=data.n_train, seed=0)
>>> history = train(model, data, epochs=30, batch_size=10, learning_rate=0.1, seed=0)
>>> history.history["val_accuracy"][-1]   # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_initlab.models import default_loss

DEVICES = ("auto", "cpu", "gpu")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; names the model (its scheme) and the epoch."""


def resolve_device(device: str) -> str:
    """Maps ``"auto" | "cpu" | "gpu"`` to a TensorFlow device name.

    ``"auto"`` picks the first GPU when there is one. Asking for ``"gpu"`` on a
    machine without one raises, rather than silently running on the CPU.
    """
    if device not in DEVICES:
        raise ValueError(f"Argument `device` must be one of {DEVICES}. Received: device={device!r}")
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if device == "gpu" and not has_gpu:
        raise RuntimeError("device='gpu' was asked for, but TensorFlow sees no GPU on this machine.")
    return "/GPU:0" if device == "gpu" or (device == "auto" and has_gpu) else "/CPU:0"


def epoch_orders(seed: int, epochs: int, n: int) -> np.ndarray:
    """The shuffled example order of every epoch, shape ``(epochs, n)``: one seeded NumPy stream."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int32)


def as_model_input(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Reshapes images ``(n, H, W, C)`` to the model's input shape (e.g. ``(n, 784)`` for an MLP)."""
    shape = tuple(model.input_shape[1:])
    if math.prod(shape) != math.prod(x.shape[1:]):
        raise ValueError(
            f"Data of shape {x.shape[1:]} cannot feed model {model.name!r} with input shape {shape}."
        )
    return x.reshape((len(x), *shape)).astype(np.float32, copy=False)


class _CompiledSteps:
    """The compiled per-epoch training loop and the validation pass of one model."""

    def __init__(self, model: keras.Model, loss: Callable, optimizer: keras.optimizers.Optimizer, batch_size: int):
        self.model, self.loss, self.optimizer, self.batch_size = model, loss, optimizer, batch_size
        self.train_epoch = tf.function(self._train_epoch, jit_compile=True, reduce_retracing=True)
        self.evaluate = tf.function(self._evaluate, jit_compile=True)

    def _losses(self, x, y, training):
        """(data loss, data loss + regularization losses, predictions) on one batch."""
        pred = self.model(x, training=training)
        data_loss = keras.ops.mean(self.loss(y, pred))
        total = data_loss
        for penalty in self.model.losses:
            total = total + penalty
        return data_loss, total, pred

    def _train_epoch(self, x, y, order):
        batch = self.batch_size
        steps = tf.shape(order)[0] // batch
        variables = self.model.trainable_variables
        total = tf.constant(0.0)
        for step in tf.range(steps):
            # A static-size slice: XLA then gathers `batch` rows, not a dynamic-size window.
            idx = tf.slice(order, [step * batch], [batch])
            with tf.GradientTape() as tape:
                data_loss, loss, _ = self._losses(tf.gather(x, idx), tf.gather(y, idx), training=True)
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            total += data_loss
        return total / tf.cast(steps, tf.float32)

    def _evaluate(self, x, y):
        data_loss, _, pred = self._losses(x, y, training=False)
        hits = tf.cast(tf.equal(tf.argmax(pred, axis=-1, output_type=tf.int32), y), tf.float32)
        return data_loss, tf.reduce_mean(hits)


def check_schedule(epochs: int, batch_size: int, n_train: int) -> None:
    """ValueError unless ``epochs`` and ``batch_size`` are ints >= 1 and one batch fits the training set."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Argument `{name}` must be an int >= 1. Received: {name}={value!r}")
    if batch_size > n_train:
        raise ValueError(f"batch_size={batch_size} exceeds the {n_train} training examples.")


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

    Raises:
        NonFiniteLossError: when a loss becomes NaN or infinite; names the epoch and the model.
    """
    check_schedule(epochs, batch_size, len(data.x_train))
    device_name = resolve_device(device)
    optimizer = optimizer or keras.optimizers.SGD(learning_rate)
    steps = _CompiledSteps(model, loss or default_loss(model), optimizer, batch_size)
    orders = epoch_orders(seed, epochs, len(data.x_train))
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*(callbacks or []), history], model=model, epochs=epochs, steps=len(data.x_train) // batch_size, verbose=0
    )
    with tf.device(device_name):
        optimizer.build(model.trainable_variables)
        x_train = tf.constant(as_model_input(model, data.x_train))
        y_train = tf.constant(data.y_train, dtype=tf.int32)
        x_val = tf.constant(as_model_input(model, data.x_val))
        y_val = tf.constant(data.y_val, dtype=tf.int32)
        model.stop_training = False
        callback_list.on_train_begin()
        for epoch in range(epochs):
            callback_list.on_epoch_begin(epoch)
            train_loss = float(steps.train_epoch(x_train, y_train, tf.constant(orders[epoch])))
            val_loss, val_accuracy = (float(v) for v in steps.evaluate(x_val, y_val))
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise NonFiniteLossError(
                    f"Non-finite loss in epoch {epoch + 1} of model {model.name!r}: "
                    f"train_loss={train_loss}, val_loss={val_loss}."
                )
            logs = {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callback_list.on_train_end()
    return history
