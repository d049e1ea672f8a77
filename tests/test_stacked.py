"""Stacked training: K models in one graph follow exactly the trajectories `train` gives each alone."""

import keras
import numpy as np
import pytest

from keras_initlab.data import load_dataset
from keras_initlab.models import build_mlp
from keras_initlab.training import NonFiniteLossError, stacked, train, train_stacked
from keras_initlab.training.planning import (
    MAX_GROUP_SIZE,
    estimate_bytes,
    group_sizes,
    lanes_for,
    parallel_lanes,
    plan_groups,
    single_model_bytes,
)

TOLERANCE = dict(rtol=1e-5, atol=1e-6)  # float32: the stacked products sum in another order


@pytest.fixture(scope="module")
def small():
    return load_dataset("mnist-10k").subset(200, 100)


def nielsen(scheme, data, seed=0):
    return build_mlp([784, 30, 10], scheme=scheme, l2_lambda=5.0, n_train=data.n_train, seed=seed)


def assert_same_training(stacked_models, stacked_results, alone_models, alone_histories):
    for model, result, other, history in zip(
        stacked_models, stacked_results, alone_models, alone_histories, strict=True
    ):
        assert isinstance(result, keras.callbacks.History), result
        assert set(result.history) == {"train_loss", "val_loss", "val_accuracy"}
        for key, values in history.history.items():
            np.testing.assert_allclose(result.history[key], values, **TOLERANCE, err_msg=key)
        for w, v in zip(model.weights, other.weights, strict=True):
            np.testing.assert_allclose(w.numpy(), v.numpy(), **TOLERANCE, err_msg=w.path)


def test_three_schemes_stacked_end_where_train_takes_each_alone(small):
    # 200 examples, batch 10, 1 epoch: 20 SGD steps with Nielsen's L2.
    schemes = ("nielsen-default", "nielsen-large", "he")
    models = [nielsen(s, small, seed=i) for i, s in enumerate(schemes)]
    alone = [nielsen(s, small, seed=i) for i, s in enumerate(schemes)]
    before = [m.layers[1].kernel.numpy() for m in models]
    results = train_stacked(models, small, epochs=1, batch_size=10, learning_rate=0.1, seed=7)
    histories = [train(m, small, epochs=1, batch_size=10, learning_rate=0.1, seed=7) for m in alone]
    assert_same_training(models, results, alone, histories)
    assert all(
        not np.allclose(b, m.layers[1].kernel.numpy()) for b, m in zip(before, models, strict=True)
    )  # weights written back
    assert len({r.history["val_loss"][0] for r in results}) == 3  # the slices did not share weights


def test_models_of_several_seeds_in_one_group_end_where_train_takes_each_with_its_seed(small):
    # K = 6: 3 seeds x 2 schemes, given in mixed order, in one group (segments of 2 models per seed) and
    # in two lanes of 3 (segments of 2 and 1); each model ends where `train` with its own seed takes it.
    runs = [(s, seed) for seed in (5, 0, 9) for s in ("nielsen-default", "nielsen-large")][::-1]
    seeds = [seed for _, seed in runs]
    alone = [nielsen(s, small, seed=i) for i, (s, _) in enumerate(runs)]
    histories = [
        train(m, small, epochs=2, batch_size=10, learning_rate=0.1, seed=seed)
        for m, seed in zip(alone, seeds, strict=True)
    ]
    for plan in (dict(lanes=1), dict(lanes=2)):
        models = [nielsen(s, small, seed=i) for i, (s, _) in enumerate(runs)]
        results = train_stacked(models, small, epochs=2, batch_size=10, learning_rate=0.1, seed=seeds, **plan)
        assert_same_training(models, results, alone, histories)
    assert len({h.history["val_loss"][-1] for h in histories}) == 6  # seeds and schemes all differ


def test_seeds_are_one_int_or_one_per_model(small):
    models = [nielsen("he", small, seed=i) for i in range(2)]
    with pytest.raises(ValueError, match=r"`seed`.* a list of 2 int\(s\) >= 0"):
        train_stacked(models, small, epochs=1, seed=[0, 1, 2])
    with pytest.raises(ValueError, match=r"`seed\[1\]`.* >= 0.*-1"):
        train_stacked(models, small, epochs=1, seed=[0, -1])
    with pytest.raises(TypeError, match=r"`seed\[0\]`.*an int"):
        train_stacked(models, small, epochs=1, seed=[0.5, 1])


def test_the_compiled_epoch_is_made_once_per_architecture(small):
    models = [nielsen("he", small, seed=i) for i in range(3)]
    arch = stacked.architecture(models)
    first = stacked._compiled_epoch(arch, 10, 0.1)
    assert stacked._compiled_epoch(stacked.architecture(models[1:]), 10, 0.1) is first
    assert stacked._compiled_epoch(arch, 20, 0.1) is not first
    relu = build_mlp([784, 30, 10], activation="relu", output="softmax", scheme="he", seed=0)
    assert stacked._compiled_epoch(stacked.architecture([relu]), 10, 0.1) is not first


def test_a_small_memory_budget_splits_the_models_into_groups_with_the_same_results(small, monkeypatch):
    shared, per_model = estimate_bytes(nielsen("he", small), small, 10)
    tiny = shared + 2 * per_model  # two models fit at a time
    assert plan_groups(nielsen("he", small), small, 4, 10, "/CPU:0", max_bytes=tiny) == [[2], [2]]
    assert plan_groups(nielsen("he", small), small, 4, 10, "/CPU:0", max_bytes=tiny, lanes=2) == [[1, 1], [1, 1]]
    with pytest.raises(MemoryError, match=r"budget is \d+ bytes \(max_bytes=\d+\)"):
        plan_groups(nielsen("he", small), small, 4, 10, "/CPU:0", max_bytes=shared)

    waves = []
    original = stacked._train_wave
    monkeypatch.setattr(
        stacked,
        "_train_wave",
        lambda steps, groups, *a: (
            waves.append([sum(map(len, segments)) for segments in groups]) or original(steps, groups, *a)
        ),
    )
    split = [nielsen("nielsen-default", small, seed=i) for i in range(4)]
    split_results = train_stacked(split, small, epochs=2, seed=1, max_bytes=tiny, lanes=1)
    assert waves == [[2], [2]]
    concurrent = [nielsen("nielsen-default", small, seed=i) for i in range(4)]
    concurrent_results = train_stacked(concurrent, small, epochs=2, seed=1, lanes=2)
    assert waves == [[2], [2], [2, 2]]  # two groups of two, their epochs running at the same time
    assert_same_training(split, split_results, concurrent, concurrent_results)


def test_plan_groups_keeps_every_lane_busy_and_caps_the_group_size(small):
    model = nielsen("he", small)
    cap = MAX_GROUP_SIZE["/CPU:0"]
    assert plan_groups(model, small, 1, 10, "/CPU:0", lanes=2) == [[1]]
    assert plan_groups(model, small, 3, 10, "/CPU:0", lanes=2) == [[2, 1]]
    assert plan_groups(model, small, 16, 10, "/CPU:0", lanes=2) == [[8, 8]]
    assert plan_groups(model, small, 16, 10, "/CPU:0", lanes=1) == [[16]]
    assert plan_groups(model, small, 4 * cap, 10, "/CPU:0", lanes=2) == [[cap, cap], [cap, cap]]
    assert plan_groups(model, small, 4 * cap + 1, 10, "/CPU:0", lanes=1) == [[13]] * 5


def test_runs_alone_get_a_lane_per_core_as_many_as_fit_and_always_one(small):
    model = nielsen("he", small)
    per_model = single_model_bytes(model, small, 10)
    cores = parallel_lanes("/CPU:0")
    assert lanes_for(model, small, 10, "/CPU:0", max_bytes=100 * per_model) == min(cores, 100)
    assert lanes_for(model, small, 10, "/CPU:0", max_bytes=2 * per_model) == min(cores, 2)
    assert lanes_for(model, small, 10, "/CPU:0", max_bytes=per_model - 1) == 1  # one lane, even where none fits
    # The estimate: the data once, the parameters eight times, every layer's outputs for two batches and the
    # validation set (784-30-10: inputs 784, outputs 784 + 30 + 10).
    data_values = (len(small.x_train) + len(small.x_val)) * 785
    outputs = (2 * 10 + len(small.x_val)) * (784 + 30 + 10)
    assert per_model == 4 * (8 * model.count_params() + outputs + data_values)


def test_group_sizes_are_balanced():
    assert group_sizes(4, 1) == [4]
    assert group_sizes(20, 2) == [10, 10]
    assert group_sizes(5, 3) == [2, 2, 1]
    assert group_sizes(64, 4) == [16] * 4


@pytest.mark.parametrize("seeds", [[0, 0, 0], [3, 1, 3]], ids=["one seed", "two seeds"])
def test_one_model_blowing_up_leaves_the_others_untouched(small, seeds):
    # Huge first-layer weights make one ReLU/softmax model's logits infinite: NaN loss in epoch 1.
    def relu_net(seed):
        return build_mlp([784, 30, 10], activation="relu", output="softmax", scheme="he", seed=seed)

    models = [relu_net(0), relu_net(1), relu_net(2)]
    models[1].layers[1].kernel.assign(np.full((784, 30), 1e38, np.float32))
    alone = [relu_net(0), relu_net(2)]
    results = train_stacked(models, small, epochs=3, learning_rate=0.05, seed=seeds, lanes=1)

    assert isinstance(results[1], NonFiniteLossError)
    assert "Non-finite loss in epoch 1 of model 'mlp_he'" in str(results[1])
    histories = [
        train(m, small, epochs=3, learning_rate=0.05, seed=seed) for m, seed in zip(alone, seeds[::2], strict=True)
    ]
    assert all(len(values) == 3 for r in (results[0], results[2]) for values in r.history.values())
    assert_same_training([models[0], models[2]], [results[0], results[2]], alone, histories)


def test_one_model_is_trained_by_train_and_a_nan_is_returned_not_raised(small):
    model, alone = nielsen("he", small, seed=4), nielsen("he", small, seed=4)
    (result,) = train_stacked([model], small, epochs=2, seed=3)
    assert_same_training([model], [result], [alone], [train(alone, small, epochs=2, seed=3)])
    broken = build_mlp([784, 30, 10], activation="relu", output="softmax", scheme="he", seed=0)
    broken.layers[1].kernel.assign(np.full((784, 30), 1e38, np.float32))
    (failure,) = train_stacked([broken], small, epochs=2)
    assert isinstance(failure, NonFiniteLossError) and "epoch 1" in str(failure)


def test_each_model_has_its_own_callbacks_and_can_stop_alone(small):
    class Record(keras.callbacks.Callback):
        def __init__(self, stop_at=None):
            super().__init__()
            self.stop_at, self.epochs, self.ended = stop_at, [], False

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((self.model.name, sorted(logs)))
            if epoch == self.stop_at:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            self.ended = True

    models = [build_mlp([784, 10], scheme=s, seed=0) for s in ("nielsen-default", "zeros")]
    first, second = Record(), Record(stop_at=0)
    results = train_stacked(models, small, epochs=3, callbacks=[[first], [second]])
    assert first.epochs == [("mlp_nielsen-default", ["train_loss", "val_accuracy", "val_loss"])] * 3
    assert second.epochs == [("mlp_zeros", ["train_loss", "val_accuracy", "val_loss"])]
    assert first.ended and second.ended
    assert [len(r.history["val_loss"]) for r in results] == [3, 1]


def test_callbacks_see_the_weights_of_each_epoch_and_early_stopping_restores_the_best(small):
    class Weights(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.kernels = []

        def on_epoch_end(self, epoch, logs=None):
            self.kernels.append(self.model.layers[1].kernel.numpy())

    schemes = ("nielsen-default", "nielsen-large", "he")
    stacked_seen, alone_seen = [Weights() for _ in schemes], [Weights() for _ in schemes]
    train_stacked([nielsen(s, small) for s in schemes], small, epochs=3, seed=2, callbacks=[[w] for w in stacked_seen])
    for scheme, seen in zip(schemes, alone_seen, strict=True):
        train(nielsen(scheme, small), small, epochs=3, seed=2, callbacks=[seen])
    for stacked_run, alone_run in zip(stacked_seen, alone_seen, strict=True):
        assert len(stacked_run.kernels) == 3
        for a, b in zip(stacked_run.kernels, alone_run.kernels, strict=True):
            np.testing.assert_allclose(a, b, **TOLERANCE)

    # EarlyStopping restores the best epoch's weights at the end, as with `train`. Monitoring the
    # accuracy with mode "min" makes an early epoch the best, so restoring really changes the weights.
    def early_stopping():
        return keras.callbacks.EarlyStopping("val_accuracy", mode="min", patience=5, restore_best_weights=True)

    models = [nielsen(s, small) for s in schemes]
    results = train_stacked(models, small, epochs=3, seed=2, callbacks=[[early_stopping()] for _ in models])
    for scheme, model, result, seen in zip(schemes, models, results, alone_seen, strict=True):
        best = int(np.argmin(result.history["val_accuracy"]))
        assert best < 2
        alone = nielsen(scheme, small)
        train(alone, small, epochs=3, seed=2, callbacks=[early_stopping()])
        np.testing.assert_allclose(model.layers[1].kernel.numpy(), alone.layers[1].kernel.numpy(), **TOLERANCE)
        np.testing.assert_allclose(model.layers[1].kernel.numpy(), seen.kernels[best], **TOLERANCE)


@pytest.mark.parametrize(
    "other, message",
    [
        (
            dict(sizes=[784, 100, 10]),
            r"model 1 \('mlp_he'\) differs from model 0 \('mlp_he'\) in sizes "
            r"\[784, 100, 10\] != \[784, 30, 10\]",
        ),
        (dict(activation="relu"), r"activation of Dense layer 1 'relu' != 'sigmoid'"),
        (dict(output="softmax"), r"activation of Dense layer 2 'softmax' != 'sigmoid'"),
        (dict(l2_lambda=1.0), r"L2 coefficient of Dense layer 1 6.25e-05 != 0.0003125"),
    ],
)
def test_models_of_different_architectures_do_not_stack(small, other, message):
    spec = dict(sizes=[784, 30, 10], activation="sigmoid", output="sigmoid", scheme="he", l2_lambda=5.0, n_train=8000)
    models = [build_mlp(**spec, seed=0), build_mlp(**{**spec, **other}, seed=1)]
    with pytest.raises(ValueError, match=message):
        train_stacked(models, small, epochs=1)


@pytest.mark.parametrize(
    "models, kwargs, message",
    [
        (lambda: [], {}, r"`models` must be a list of at least 1 Keras model\(s\)"),
        (lambda: [build_mlp([784, 10], seed=0)] * 2, {}, r"the same model more than once"),
        (
            lambda: [keras.Sequential([keras.Input((784,)), keras.layers.Dropout(0.1), keras.layers.Dense(10)])],
            {},
            r"layer 'dropout\w*' of model 'sequential\w*' is a Dropout; only Dense layers stack",
        ),
        (
            lambda: [build_mlp([784, 10], seed=0)],
            {"callbacks": [[]] * 2},
            r"`callbacks` must be a list of 1 lists of callbacks",
        ),
        (lambda: [build_mlp([784, 10], seed=0)], {"max_bytes": 0}, r"`max_bytes` must be an int >= 1 or None"),
        (lambda: [build_mlp([784, 10], seed=0)], {"epochs": 0}, r"`epochs` must be an int >= 1"),
        (
            lambda: [build_mlp([784, 10], seed=0)],
            {"max_group_size": 0},
            r"`max_group_size` must be an int >= 1 or None",
        ),
        (lambda: [build_mlp([784, 10], seed=0)], {"lanes": -2}, r"`lanes` must be an int >= 1 or None"),
        (
            lambda: [keras.Sequential([keras.Input((28, 28)), keras.layers.Dense(10)])],
            {},
            r"whose input is a flat vector; model 'sequential\w*' has input shape \(None, 28, 28\)",
        ),
    ],
)
def test_bad_arguments(small, models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_stacked(models(), small, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_bytes": 1.5e9}, r"`max_bytes` must be an int >= 1 or None. Received: max_bytes=1500000000.0"),
        ({"lanes": "2"}, r"`lanes` must be an int >= 1 or None. Received: lanes='2'"),
        ({"batch_size": 10.0}, r"`batch_size` must be an int >= 1. Received: batch_size=10.0"),
        ({"seed": True}, r"`seed` must be an int >= 0. Received: seed=True"),
        ({"learning_rate": "0.1"}, r"`learning_rate` must be a positive finite number"),
        ({"callbacks": 5}, r"`callbacks` must be a list of 2 lists of callbacks. Received: callbacks=5"),
        ({"callbacks": [[], 5]}, r"`callbacks\[1\]` must be a list"),
    ],
)
def test_arguments_of_the_wrong_type_are_type_errors(small, kwargs, message):
    models = [build_mlp([784, 10], seed=0), build_mlp([784, 10], seed=1)]
    with pytest.raises(TypeError, match=message):
        train_stacked(models, small, **kwargs)


def test_a_negative_learning_rate_and_a_lone_model_are_refused(small):
    models = [build_mlp([784, 10], seed=0), build_mlp([784, 10], seed=1)]
    with pytest.raises(
        ValueError, match=r"`learning_rate` must be a positive finite number. Received: learning_rate=-1.0"
    ):
        train_stacked(models, small, learning_rate=-1.0)  # would silently climb the loss
    with pytest.raises(TypeError, match=r"`models` must be a list"):
        train_stacked(models[0], small)


def test_group_size_and_lanes_are_arguments(small):
    model = nielsen("he", small)
    assert plan_groups(model, small, 16, 10, "/CPU:0", lanes=1, max_group_size=4) == [[4], [4], [4], [4]]
    assert plan_groups(model, small, 16, 10, "/CPU:0", lanes=2, max_group_size=4) == [[4, 4], [4, 4]]
    assert plan_groups(model, small, 40, 10, "/CPU:0", lanes=1, max_group_size=40) == [[40]]
    models = [nielsen("he", small, seed=i) for i in range(3)]
    alone = [nielsen("he", small, seed=i) for i in range(3)]
    one_group = train_stacked(models, small, epochs=1, seed=2, max_group_size=3, lanes=1)
    separately = train_stacked(alone, small, epochs=1, seed=2, max_group_size=1, lanes=1)
    assert_same_training(models, one_group, alone, separately)
