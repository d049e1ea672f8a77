"""An example model factory: a small conv net for 28x28 images, initialized by the scheme it is given.

`initlab compare cnn-adam` calls ``build`` once per (scheme, seed) run,
with keyword arguments:

- ``scheme``: a `keras_initlab.Scheme`. Every ``scheme.kernel()`` / ``scheme.bias()`` call returns
  a new initializer with its own seed (derived from the run's seed), so ask for a new one for
  every layer: the same (scheme, seed) then gives the same weights each time ``build`` is called.
- ``input_shape``: one image, e.g. ``(28, 28, 1)``.
- ``num_classes``: the number of labels, e.g. ``10``.

It returns an uncompiled ``keras.Model`` whose output is class probabilities (softmax):
the comparison compiles nothing, it trains with the spec's optimizer and loss.

>>> import keras_initlab as kil
>>> model = build(scheme=kil.Scheme("he", seed=0), input_shape=(28, 28, 1), num_classes=10)
"""

import keras


def build(scheme, input_shape, num_classes):
    def init(**kwargs):  # fresh, differently seeded initializers for one layer
        return dict(kernel_initializer=scheme.kernel(), bias_initializer=scheme.bias(), **kwargs)

    inputs = keras.Input(input_shape)
    h = keras.layers.Conv2D(16, 3, activation="relu", **init(name="conv_1"))(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(32, 3, activation="relu", **init(name="conv_2"))(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu", **init(name="dense_1"))(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax", **init(name="dense_out"))(h)
    return keras.Model(inputs, outputs, name=f"small_cnn_{scheme.name}")
