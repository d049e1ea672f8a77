"""Where computation runs: the Keras backend the package needs, and the devices a trainer may use.

The initializers, schemes, theory, models and the forward-pass diagnostics work on
any Keras 3 backend. The trainers (`keras_initlab.training`), the comparisons built
on them and the gradient norms of `keras_initlab.diagnose` compile TensorFlow code;
each calls `require_tensorflow` first, so that another backend gets one clear error
instead of a failure deep inside TensorFlow. This module imports no TensorFlow.

>>> require_tensorflow("train")   # passes under KERAS_BACKEND=tensorflow, raises BackendError under another
"""

from __future__ import annotations

import keras

DEVICES = ("auto", "cpu", "gpu")
"""Device choices of the trainers: ``"auto"`` takes the first GPU when there is one."""


class BackendError(RuntimeError):
    """A TensorFlow-only feature was called under another Keras backend; the message says how to switch."""


def require_tensorflow(feature: str) -> None:
    """Raises `BackendError` unless Keras runs on TensorFlow; ``feature`` names what needed it."""
    active = keras.backend.backend()
    if active != "tensorflow":
        raise BackendError(
            f"{feature} needs the TensorFlow backend of Keras, but the active backend is {active!r}. "
            "Set KERAS_BACKEND=tensorflow in the environment before Keras is imported "
            '(or "backend": "tensorflow" in ~/.keras/keras.json). The initializers, schemes, '
            "theory and models work on every backend."
        )
