"""The 30-layer ReLU network of the built-in spec ``deep-relu`` with batch normalization: every hidden Dense layer
(100 units, no bias: BatchNormalization's offset takes its place) is followed by ``BatchNormalization`` and then the
ReLU; a softmax output. The built-in spec ``deep-relu-bn`` compares initializations on it.

>>> import keras_initlab as kil
>>> model = build(scheme=kil.Scheme("glorot", seed=0), input_shape=(28, 28, 1), num_classes=10)
>>> sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
29
"""

import keras

HIDDEN_LAYERS, UNITS = 29, 100


def build(scheme, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    h = keras.layers.Flatten()(inputs)
    for i in range(1, HIDDEN_LAYERS + 1):
        h = keras.layers.Dense(UNITS, use_bias=False, kernel_initializer=scheme.kernel(), name=f"dense_{i}")(h)
        h = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(h)
        h = keras.layers.Activation("relu", name=f"relu_{i}")(h)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=scheme.kernel(),
        bias_initializer=scheme.bias(),
        name="dense_out",
    )(h)
    return keras.Model(inputs, outputs, name=f"deep_relu_bn_{scheme.name}")
