"""Any Keras model in a comparison: the factory contract, model kinds, the optimizer and loss keys."""

import math

import keras
import numpy as np
import pytest

from conftest import RAISE_LINE
from keras_initlab import Scheme, load_dataset, train
from keras_initlab.models import FactoryError, build_from_factory, load_factory

Z = 5.0


def kernels(model):
    return {layer.name: keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers if hasattr(layer, "kernel")}


# -- the factory contract ------------------------------------------------------------------


def test_each_layer_gets_its_own_draw_and_the_seed_reproduces(factories):
    build = load_factory("models/factories.py:build", factories)
    first = kernels(build_from_factory(build, Scheme("he", seed=3), (28, 28, 1), 10))
    again = kernels(build_from_factory(build, Scheme("he", seed=3), (28, 28, 1), 10))
    other = kernels(build_from_factory(build, Scheme("he", seed=4), (28, 28, 1), 10))
    assert first["a"].shape == (784, 64) and first["b"].shape == (64, 64)
    same_shaped = kernels(build_from_factory(build, Scheme("he", seed=3), (8, 8, 1), 64))  # a: 64x64, b: 64x64
    assert not np.array_equal(same_shaped["a"], same_shaped["b"])
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
        assert not np.array_equal(first[name], other[name])


def test_he_std_per_layer(factories):
    build = load_factory("models/factories.py:build", factories)
    for name, w in kernels(build_from_factory(build, Scheme("he", seed=0), (28, 28, 1), 10)).items():
        expected = math.sqrt(2 / w.shape[0])  # Var(w) = 2 / fan_in
        assert abs(w.std() - expected) < Z * expected / math.sqrt(2 * w.size), name  # SE of a std: std/sqrt(2n)


def test_a_scheme_instance_pair_is_cloned_with_fresh_seeds():
    pair = (keras.initializers.RandomNormal(stddev=0.5, seed=1), keras.initializers.Zeros())
    scheme = Scheme(pair, seed=0)
    first, second = scheme.kernel(), scheme.kernel()
    assert first is not pair[0] and second is not first
    assert not np.array_equal(first((5, 5)), second((5, 5)))
    assert scheme.name == "RandomNormal_Zeros"
    assert np.array_equal(Scheme(pair, seed=0).kernel()((5, 5)), first((5, 5)))


def test_an_unbuilt_sequential_is_built_for_the_input_shape(factories):
    model = build_from_factory(
        load_factory("models/factories.py:sequential", factories), Scheme("he", 0), (28, 28, 1), 10
    )
    assert model.output_shape == (None, 10)


def test_an_importable_module_and_a_function_are_factories(factories, monkeypatch):
    monkeypatch.syspath_prepend(str(factories / "models"))
    by_module = load_factory("factories:build")
    assert by_module.__name__ == "build"
    assert load_factory(by_module) is by_module


@pytest.mark.parametrize(
    "reference, message",
    [
        ("models/missing.py:build", r"no such file .*missing.py"),
        ("models/factories.py:bulid", r"has no 'bulid'; its functions: build, dense, exits, logits, no_arguments"),
        ("models/factories.py", r"is not a factory reference; write 'file.py:function'"),
        ("no_such_module_here:build", r"importing no_such_module_here raised ModuleNotFoundError"),
    ],
)
def test_factories_that_cannot_be_loaded(factories, reference, message):
    with pytest.raises(FactoryError, match=message):
        load_factory(reference, factories)


@pytest.mark.parametrize(
    "function, message",
    [
        ("raises", rf"raised RuntimeError: no GPU here \(factories.py, line {RAISE_LINE}\)"),
        ("not_a_model", r"returned a str, not a keras.Model"),
        ("wrong_classes", r"output shape is \(11,\), not \(10,\)"),
        ("no_arguments", r"must accept the keyword arguments scheme, input_shape, num_classes; its signature is \(\)"),
    ],
)
def test_factories_that_fail_or_return_the_wrong_thing(factories, function, message):
    with pytest.raises(FactoryError, match=message):
        build_from_factory(load_factory(f"models/factories.py:{function}", factories), Scheme("he", 0), (28, 28, 1), 10)


# -- spec keys -----------------------------------------------------------------------------


# -- training and tracking -----------------------------------------------------------------


def test_train_gives_the_same_weights_with_and_without_xla():
    data = load_dataset("mnist-10k").subset(256, 64)

    def trained(jit_compile):
        import keras_initlab

        model = keras_initlab.build_convnet(filters=(4, 8), seed=0)
        train(model, data, epochs=1, batch_size=32, optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
        return kernels(model)

    with_xla, without = trained(True), trained(False)
    for name in with_xla:
        np.testing.assert_allclose(with_xla[name], without[name], rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match=r"jit_compile"):
        trained("yes")
