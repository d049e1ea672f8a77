"""The layers watched during training (`keras_initlab.watch`): `diagnose`'s definitions after every epoch, the
stacked trainer's one pass equal to the single-model trainer's, and the callback for ``fit``."""

import keras
import numpy as np
import pytest

import keras_initlab as kil
from keras_initlab.models import default_loss
from keras_initlab.watch import STEP_ZERO, LayerWatch, WatchLayers, step_zero

FLOAT32 = dict(rel=2e-4, abs=1e-6)
"""float32 statistics (a reduction over ~1e4 entries) against diagnose's float64 ones, or two float32 programs."""


@pytest.fixture(scope="module")
def data():
    return kil.load_dataset("mnist-10k").subset(600, 300)


def probe(data):
    return data.x_val[:200], data.y_val[:200]


def convnet():
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed=1))(inputs)
    h = keras.layers.Conv2D(4, 3, strides=2, kernel_initializer=keras.initializers.GlorotNormal(seed=2))(h)
    h = keras.layers.Activation("tanh")(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10, activation="softmax", kernel_initializer=keras.initializers.HeNormal(seed=3))(h)
    return keras.Model(inputs, outputs)


MODELS = {
    "relu mlp": lambda: kil.build_mlp([784, 32, 16, 10], activation="relu", output="softmax", scheme="he", seed=0),
    "tanh mlp": lambda: kil.build_mlp(
        [784, 32, 10], activation="tanh", output="sigmoid", scheme="nielsen-large", seed=0
    ),
    "convnet": convnet,
}


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_fit_with_the_callback_logs_what_diagnose_measures_at_every_epoch_and_the_kernels_moves(data, make):
    model = make()
    default = default_loss(model)
    model.compile(keras.optimizers.SGD(0.05), default)
    x, y = probe(data)
    kernels = [model.get_layer(row.name).kernel.numpy() for row in kil.diagnose(model, x)]
    watch, seen = WatchLayers(x, y), []

    class Check(keras.callbacks.Callback):  # after the watch: the logs hold its statistics; diagnose the model now
        def on_epoch_end(self, epoch, logs=None):
            seen.append(
                (
                    dict(logs),
                    step_zero(kil.diagnose(self.model, x, y, loss=default)),
                    [self.model.get_layer(row.name).kernel.numpy() for row in kil.diagnose(self.model, x)],
                )
            )

    initial = step_zero(kil.diagnose(model, x, y, loss=default))
    model.fit(
        data.x_train.reshape(-1, *model.input_shape[1:]),
        data.y_train,
        epochs=2,
        batch_size=50,
        verbose=0,
        callbacks=[watch, Check()],
    )
    assert watch.initial.keys() == initial.keys() and watch.initial == pytest.approx(initial, **FLOAT32)
    assert {key.rsplit("/", 1)[1] for key in initial} <= set(STEP_ZERO)
    for logs, measured, after in seen:
        for key, value in measured.items():
            assert logs[key] == pytest.approx(value, **FLOAT32), key
        for depth, (old, new) in enumerate(zip(kernels, after, strict=True), start=1):  # ||W - W'|| / ||W'||
            ratio = np.linalg.norm(new - old) / np.linalg.norm(old)
            assert 0 < ratio and logs[f"layers/layer{depth}/update_ratio"] == pytest.approx(ratio, rel=1e-4)
        kernels = after
    assert seen[0][0]["layers/layer1/grad_norm"] != seen[1][0]["layers/layer1/grad_norm"]


def test_the_stacked_trainer_measures_every_model_as_the_single_model_trainer_does(data):
    def models():
        return [
            kil.build_mlp([784, 24, 12, 10], activation="relu", output="softmax", scheme=scheme, seed=seed)
            for seed in (0, 1)
            for scheme in ("he", "glorot")
        ]

    watch = LayerWatch(*probe(data))
    stacked = kil.train_stacked(models(), data, epochs=2, batch_size=20, seed=[0, 0, 1, 1], watch=watch)
    unwatched = kil.train_stacked(models(), data, epochs=2, batch_size=20, seed=[0, 0, 1, 1])
    for k, (model, seed) in enumerate(zip(models(), (0, 0, 1, 1), strict=True)):
        for key, values in unwatched[k].history.items():  # watching changes nothing else, to the last bit
            assert stacked[k].history[key] == values, (k, key)
        alone = kil.train(model, data, epochs=2, batch_size=20, seed=seed, watch=watch).history
        keys = [key for key in alone if key.startswith("layers/")]
        # two ReLU layers: preact and activation std, dead fraction, gradient norm, update ratio; softmax: no dead units
        assert len(keys) == 2 * 5 + 4
        assert stacked[k].history.keys() == alone.keys()
        for key in keys:
            assert stacked[k].history[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), (k, key)


def test_every_n_epochs_and_no_watch_by_default(data):
    model = MODELS["relu mlp"]()
    history = kil.train(model, data, epochs=4, batch_size=50, watch=LayerWatch(*probe(data), every=2)).history
    assert len(history["val_accuracy"]) == 4 and len(history["layers/layer1/grad_norm"]) == 2
    assert not [
        key
        for key in kil.train(MODELS["relu mlp"](), data, epochs=1, batch_size=50).history
        if key.startswith("layers/")
    ]


def test_bad_watches_are_refused_naming_the_argument(data):
    x, y = probe(data)
    with pytest.raises(ValueError, match="every"):
        LayerWatch(x, y, every=0)
    with pytest.raises(TypeError, match="every"):
        LayerWatch(x, y, every=1.5)
    with pytest.raises(ValueError, match="x of 200 and y of 10 examples"):
        LayerWatch(x, y[:10])
    with pytest.raises(TypeError, match="watch"):
        kil.train(MODELS["relu mlp"](), data, epochs=1, watch=(x, y))
