"""The trainer: learning on real MNIST, seeded shuffling, callbacks, devices, failures."""

import threading

import keras
import numpy as np
import pytest

from keras_initlab.data import load_dataset
from keras_initlab.models import build_convnet, build_mlp
from keras_initlab.training import NonFiniteLossError, epoch_orders, resolve_device, train


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist-10k")


def nielsen(scheme, data, seed=0):
    return build_mlp([784, 30, 10], scheme=scheme, l2_lambda=5.0, n_train=data.n_train, seed=seed)


def test_one_over_sqrt_n_learns_faster_than_large_weights_in_the_first_epoch(mnist):
    acc = {}
    for scheme in ("nielsen-default", "nielsen-large"):
        history = train(nielsen(scheme, mnist), mnist, epochs=1, seed=0)
        acc[scheme] = history.history["val_accuracy"][0]
    assert acc["nielsen-default"] > 0.85
    assert acc["nielsen-default"] > acc["nielsen-large"] + 0.05, acc


def test_history_has_one_value_per_epoch_and_same_seed_reproduces(mnist):
    data = mnist.subset(1000, 500)
    first = train(nielsen("nielsen-default", data), data, epochs=3, seed=5).history
    again = train(nielsen("nielsen-default", data), data, epochs=3, seed=5).history
    other = train(nielsen("nielsen-default", data), data, epochs=3, seed=6).history
    assert set(first) == {"train_loss", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in first.values())
    assert first == again
    assert first["train_loss"] != other["train_loss"]


def test_epoch_orders_are_seeded_permutations():
    orders = np.stack(list(epoch_orders(1, 3, 100)))
    assert orders.shape == (3, 100)
    assert all(sorted(o) == list(range(100)) for o in orders)
    assert not np.array_equal(orders[0], orders[1])
    np.testing.assert_array_equal(orders, np.stack(list(epoch_orders(1, 3, 100))))


def test_epoch_orders_are_drawn_one_epoch_at_a_time():
    orders = epoch_orders(0, 10**12, 8000)  # a huge number of epochs costs nothing up front
    first = next(orders)
    assert first.shape == (8000,) and first.dtype == np.int32
    np.testing.assert_array_equal(first, next(epoch_orders(0, 1, 8000)))


def test_any_keras_optimizer_and_callbacks(mnist):
    data = mnist.subset(1000, 500)

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.seen = sorted(logs)
            if epoch == 1:
                self.model.stop_training = True

    stopper = StopAfterTwo()
    model = build_mlp([784, 30, 10], activation="relu", output="softmax", scheme="he", seed=0)
    history = train(model, data, epochs=10, optimizer=keras.optimizers.Adam(1e-3), callbacks=[stopper])
    assert len(history.history["val_accuracy"]) == 2
    assert stopper.seen == ["train_loss", "val_accuracy", "val_loss"]
    assert history.history["val_accuracy"][-1] > 0.7


def test_convnet_trains_on_images(mnist):
    data = mnist.subset(2000, 500)
    model = build_convnet(scheme="he", seed=0)
    history = train(model, data, epochs=2, batch_size=20, learning_rate=0.05, seed=0)
    assert history.history["val_accuracy"][-1] > 0.6


def test_non_finite_loss_names_the_epoch_and_the_scheme(mnist):
    data = mnist.subset(200, 50)
    model = build_mlp([784, 30, 10], activation="relu", output="softmax", scheme="he", seed=0)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 of model 'mlp_he'"):
        train(model, data, epochs=3, learning_rate=1e30)


def test_devices():
    assert resolve_device("cpu") == "/CPU:0"
    with pytest.raises(ValueError, match=r"`device` must be one of \('auto', 'cpu', 'gpu'\). Received: device='tpu'"):
        resolve_device("tpu")


def test_asking_for_a_missing_gpu_is_an_error():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        assert resolve_device("gpu") == "/GPU:0"
    else:
        with pytest.raises(RuntimeError, match="TensorFlow sees no GPU"):
            resolve_device("gpu")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"epochs": 0}, ValueError, "`epochs` must be an int >= 1"),
        ({"batch_size": 2.5}, TypeError, "`batch_size` must be an int >= 1"),  # a wrong type is a TypeError
        ({"epochs": True}, TypeError, "`epochs` must be an int >= 1. Received: epochs=True"),
        ({"batch_size": 5000}, ValueError, "exceeds the 1000 training examples"),
    ],
)
def test_bad_training_arguments(mnist, kwargs, error, message):
    data = mnist.subset(1000, 10)
    with pytest.raises(error, match=message):
        train(build_mlp([784, 10], seed=0), data, **kwargs)


def test_data_that_does_not_fit_the_model(mnist):
    with pytest.raises(ValueError, match=r"cannot feed model"):
        train(build_mlp([100, 10], seed=0), mnist.subset(100, 10), epochs=1)


def dropout_mlp(scheme, seed):
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(30, activation="tanh", kernel_initializer=scheme),
            keras.layers.Dropout(0.3, seed=7),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


ARCHITECTURES = {  # (model of a scheme and a seed, optimizer)
    "mlp, plain SGD": (
        lambda scheme, seed: build_mlp([784, 30, 10], scheme=scheme, l2_lambda=5.0, n_train=200, seed=seed),
        lambda: None,
    ),
    "mlp, momentum": (
        lambda scheme, seed: build_mlp([784, 30, 10], scheme=scheme, seed=seed),
        lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    ),
    "deep relu mlp, Adam": (
        lambda scheme, seed: build_mlp([784, 20, 20, 20, 10], activation="relu", scheme=scheme, seed=seed),
        lambda: keras.optimizers.Adam(1e-3),
    ),
    "convnet, Adam": (
        lambda scheme, seed: build_convnet(filters=(4, 8), scheme=scheme, seed=seed),
        lambda: keras.optimizers.Adam(1e-3),
    ),
    "dropout": (
        lambda scheme, seed: dropout_mlp("he_normal" if scheme == "he" else "glorot_uniform", seed),
        lambda: None,
    ),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_runs_of_one_architecture_share_one_compiled_loop_and_end_where_their_own_would(mnist, name, monkeypatch):
    from keras_initlab.training import single

    make, optimizer = ARCHITECTURES[name]
    data = mnist.subset(200, 100)
    single._SHARED.clear()
    train(make("he", 1), data, epochs=2, seed=1, optimizer=optimizer())  # the architecture's first run: its loop
    ((loop,),) = single._SHARED.values()
    traced = loop.train.experimental_get_tracing_count()
    initial = make("glorot", 2)
    start = [w.copy() for w in initial.get_weights()]
    shared = train(initial, data, epochs=3, seed=2, optimizer=optimizer())
    assert loop.train.experimental_get_tracing_count() == traced and len(single._SHARED) == 1  # not traced again
    monkeypatch.setattr(single, "_structure", lambda model: None)  # as for a model that shares nothing
    alone = make("glorot", 2)
    alone.set_weights(start)
    own = train(alone, data, epochs=3, seed=2, optimizer=optimizer())  # a loop on its own variables
    assert len(single._SHARED) == 1
    assert shared.history == own.history
    for a, b in zip(initial.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit: the same program


def test_runs_trained_at_once_on_threads_get_a_loop_each_kept_for_later_and_end_where_they_end_alone(mnist):
    """Lanes: two threads train runs of one architecture at the same time; each gets a compiled loop of its own,
    which later runs reuse (no new loop, no new trace), and every run ends where it ends trained alone."""
    from keras_initlab.training import single

    data = mnist.subset(200, 100)

    def run(seed, callbacks=()):
        model = build_mlp([784, 30, 10], activation="relu", output="softmax", seed=seed)
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
        return train(model, data, epochs=2, seed=seed, optimizer=optimizer, callbacks=list(callbacks)).history

    def at_once(seeds):
        together = threading.Barrier(len(seeds))

        class Together(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                together.wait(timeout=60)  # every run holds its loop before any trains

        histories = {}

        def lane(seed):
            histories[seed] = run(seed, [Together()])

        threads = [threading.Thread(target=lane, args=(seed,)) for seed in seeds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return histories

    single._SHARED.clear()
    alone = {seed: run(seed) for seed in (1, 2)}  # one after the other: one loop
    assert [len(loops) for loops in single._SHARED.values()] == [1]
    for _ in range(2):
        assert at_once((1, 2)) == alone  # bit for bit
        (loops,) = single._SHARED.values()
        assert len(loops) == 2 and [loop.train.experimental_get_tracing_count() for loop in loops] == [1, 1]


def test_only_models_whose_config_says_everything_share_a_loop(mnist):
    from keras_initlab.training import single

    class Scaled(keras.layers.Layer):  # a layer of the user's: its config need not say what it computes
        def call(self, x):
            return 2 * x

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(10, activation="softmax")

        def call(self, x):
            return self.dense(x)

    custom = keras.Sequential([keras.Input((784,)), Scaled(), keras.layers.Dense(10, activation="softmax")])
    lam = keras.Sequential(
        [keras.Input((784,)), keras.layers.Lambda(lambda x: 2 * x), keras.layers.Dense(10, activation="softmax")]
    )
    subclassed = Subclassed()
    subclassed.build((None, 784))
    assert [single._structure(m) for m in (custom, lam, subclassed)] == [None, None, None]
    data = mnist.subset(100, 50)
    single._SHARED.clear()
    for model in (
        custom,
        build_mlp([784, 30, 10], l2_lambda=1.0, n_train=100),
        build_mlp([784, 30, 10], l2_lambda=2.0, n_train=100),
        build_mlp([784, 30, 10], seed=3),
    ):
        train(model, data, epochs=1)
    assert len(single._SHARED) == 3  # the L2 coefficient is part of the computation; the seed is not
    single._SHARED.clear()
    for seed in (4, 5):  # a new loss object per run, as a spec's loss makes: the same loss, one loop
        train(build_mlp([784, 30, 10], seed=seed), data, epochs=1, loss=keras.losses.SparseCategoricalCrossentropy())
    assert len(single._SHARED) == 1
