"""What both trainers share: the schedule, the device, the mini-batch loop and one epoch's bookkeeping.

`train` (one model) and `train_stacked` (K models in one graph) differ only in
their compiled step. Everything around it lives here, once: checking the
schedule, placing the data on the device (`DeviceData`), each epoch's seeded
example order (`epoch_orders`), the compiled loop over static-size mini-batch
slices (`run_minibatches`), accuracy, and a model's Keras callbacks, History and
non-finite-loss check (`EpochReporter`). TensorFlow backend only (see
`keras_initlab.backend`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_initlab.backend import DEVICES
from keras_initlab.checks import check_choice, check_int
from keras_initlab.models import as_model_input


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; names the model (its scheme) and the epoch."""


def resolve_device(device: str) -> str:
    """Maps ``"auto" | "cpu" | "gpu"`` to a TensorFlow device name.

    ``"auto"`` picks the first GPU when there is one. Asking for ``"gpu"`` on a
    machine without one raises, rather than silently running on the CPU.
    """
    check_choice(device, "device", DEVICES)
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if device == "gpu" and not has_gpu:
        raise RuntimeError("device='gpu' was asked for, but TensorFlow sees no GPU on this machine.")
    return "/GPU:0" if device == "gpu" or (device == "auto" and has_gpu) else "/CPU:0"


def check_schedule(epochs: int, batch_size: int, n_train: int, seed: int) -> None:
    """``epochs`` and ``batch_size`` are ints >= 1, ``seed`` an int >= 0 (TypeError, ValueError),
    and one batch fits the training set."""
    check_int(epochs, "epochs", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    check_int(seed, "seed", minimum=0)
    if batch_size > n_train:
        raise ValueError(f"batch_size={batch_size} exceeds the {n_train} training examples.")


def epoch_orders(seed: int, epochs: int, n: int) -> Iterator[np.ndarray]:
    """The shuffled example order of each of ``epochs`` epochs (int32, length ``n``), from one seeded
    NumPy stream. Drawn one epoch at a time, so memory does not grow with the number of epochs."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        yield rng.permutation(n).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class DeviceData:
    """A dataset's arrays as tensors on the current device: images shaped for the model, int32 labels."""

    x_train: tf.Tensor
    y_train: tf.Tensor
    x_val: tf.Tensor
    y_val: tf.Tensor

    @classmethod
    def place(cls, data, model: keras.Model) -> DeviceData:
        """Copies ``data`` (a `keras_initlab.data.Dataset`) to the device of the enclosing ``tf.device`` scope."""
        return cls(
            tf.constant(as_model_input(model, data.x_train)),
            tf.constant(data.y_train, dtype=tf.int32),
            tf.constant(as_model_input(model, data.x_val)),
            tf.constant(data.y_val, dtype=tf.int32),
        )


def run_minibatches(order: tf.Tensor, batch_size: int, step: Callable, carry):
    """``carry = step(indices, carry)`` for every full mini-batch of ``order``, as one ``tf.while_loop``.

    ``order`` is one example order ``(n,)`` or several ``(S, n)`` walked side by
    side; mini-batch ``i`` is ``order[..., i * batch_size:(i + 1) * batch_size]``,
    taken as a static-size slice (XLA then gathers ``batch_size`` rows, not a
    dynamic-size window); a remainder smaller than one batch is left out. For use
    inside a compiled function. Returns ``(carry, number of mini-batches)``.
    """
    steps = tf.shape(order)[-1] // batch_size
    rows = list(order.shape[:-1])

    def body(i, carry):
        batch = tf.slice(order, [0] * len(rows) + [i * batch_size], rows + [batch_size])
        return i + 1, step(batch, carry)

    _, carry = tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), carry))
    return carry, steps


def accuracy(pred: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Share of argmax predictions equal to the labels, over the example axis (the one before the classes)."""
    hits = tf.cast(tf.equal(tf.argmax(pred, axis=-1, output_type=tf.int32), y), tf.float32)
    return tf.reduce_mean(hits, axis=-1)


class EpochReporter:
    """One model's side of a training run: its Keras callbacks and History, epoch by epoch.

    ``epoch_end`` checks the losses (a `NonFiniteLossError` names the epoch and
    the model), hands ``{"train_loss", "val_loss", "val_accuracy"}`` (and the epoch's
    `keras_initlab.watch` statistics, if any) to the callbacks and returns whether the
    model asked to stop (``model.stop_training``).
    """

    def __init__(
        self,
        model: keras.Model,
        callbacks: Sequence[keras.callbacks.Callback] | None,
        epochs: int,
        steps_per_epoch: int,
    ):
        self.model = model
        self.history = keras.callbacks.History()
        self.callbacks = keras.callbacks.CallbackList(
            [*(callbacks or []), self.history], model=model, epochs=epochs, steps=steps_per_epoch, verbose=0
        )

    def begin(self) -> None:
        self.model.stop_training = False
        self.callbacks.on_train_begin()

    def epoch_begin(self, epoch: int) -> None:
        self.callbacks.on_epoch_begin(epoch)

    def epoch_end(
        self,
        epoch: int,
        train_loss: float,
        val_loss: float,
        val_accuracy: float,
        watched: Mapping[str, float] | None = None,
    ) -> bool:
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise NonFiniteLossError(
                f"Non-finite loss in epoch {epoch + 1} of model {self.model.name!r}: "
                f"train_loss={train_loss}, val_loss={val_loss}."
            )
        logs = {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy, **(watched or {})}
        self.callbacks.on_epoch_end(epoch, logs)
        return bool(self.model.stop_training)

    def end(self) -> None:
        self.callbacks.on_train_end()
