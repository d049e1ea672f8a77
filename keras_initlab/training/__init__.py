"""Fast training, on the TensorFlow backend only: one model (`train`) or many at once (`train_stacked`).

Every epoch is one XLA-compiled loop over mini-batches with the data on the device.
The modules: `driver` (what both trainers share: schedule, device, mini-batch loop,
callbacks and the non-finite check), `single` (`train`), `stacked` (`train_stacked`)
and `planning` (how stacked models are grouped). Under another Keras backend each
trainer raises `keras_initlab.backend.BackendError` before doing anything.

>>> from keras_initlab.training import train, train_stacked
"""

from keras_initlab.training.driver import NonFiniteLossError, epoch_orders, resolve_device
from keras_initlab.training.single import train
from keras_initlab.training.stacked import train_stacked

__all__ = ["NonFiniteLossError", "epoch_orders", "resolve_device", "train", "train_stacked"]
