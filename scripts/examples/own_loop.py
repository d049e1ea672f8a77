"""Your data and your training loop, tracked as a comparison of initializations (README: "Your data, your training
loop").

Run: python scripts/examples/own_loop.py   (then the printed `mlflow ui` command, and open the printed link)

Plain NumPy arrays (here the bundled MNIST sample's; any arrays of examples and integer labels will do), a Keras
model of your own built from a `keras_initlab.Scheme`, your own `model.fit`: 2 schemes x 2 seeds, each fit a child
run of one comparison in the local MLflow store (tracking/mlflow.db).
"""

import keras

import keras_initlab as kil
from initlab import Comparison

data = kil.load_dataset("mnist-10k")  # arrays: data.x_train (8000, 28, 28, 1), data.y_train (8000,), ...
x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val


def build(scheme: kil.Scheme) -> keras.Model:
    """A small ReLU network whose every layer takes its initializers from ``scheme``."""
    inputs = keras.Input(x_train.shape[1:])
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(64, "relu", kernel_initializer=scheme.kernel(), bias_initializer=scheme.bias())(h)
    h = keras.layers.Dense(64, "relu", kernel_initializer=scheme.kernel(), bias_initializer=scheme.bias())(h)
    outputs = keras.layers.Dense(10, "softmax", kernel_initializer=scheme.kernel(), bias_initializer=scheme.bias())(h)
    return keras.Model(inputs, outputs)


with Comparison("own-loop-example") as comparison:
    for scheme in ["he", "glorot"]:
        for seed in range(2):
            model = build(kil.Scheme(scheme, seed))
            model.compile(
                keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"]
            )
            with comparison.run(scheme, seed, model, x_sample=x_val[:500], y_sample=y_val[:500]) as run:
                model.fit(
                    x_train,
                    y_train,
                    validation_data=(x_val, y_val),
                    epochs=5,
                    batch_size=64,
                    verbose=0,
                    callbacks=[run.callback],
                )
