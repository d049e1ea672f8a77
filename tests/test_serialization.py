"""Initializers survive get_config/from_config and .keras files, without custom_objects."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_initlab import BiasConstant, InverseSqrtUniform, ScaledGaussian, SparseGaussian

INITIALIZERS = [
    ScaledGaussian(gain=2**0.5, mode="fan_avg", seed=11),
    InverseSqrtUniform(gain=0.5, mode="fan_out", seed=12),
    SparseGaussian(connections=3, stddev=0.2, seed=13),
    BiasConstant(0.25),
]


@pytest.mark.parametrize("init", INITIALIZERS, ids=lambda i: type(i).__name__)
def test_config_round_trip_rebuilds_the_same_initializer(init):
    config = init.get_config()
    rebuilt = type(init).from_config(config)
    assert rebuilt.get_config() == config
    np.testing.assert_array_equal(init((8, 6)), rebuilt((8, 6)))


@pytest.mark.parametrize("init", INITIALIZERS, ids=lambda i: type(i).__name__)
def test_keras_serialize_deserialize(init):
    rebuilt = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert type(rebuilt) is type(init) and rebuilt.get_config() == init.get_config()


def test_seed_generator_survives_the_config():
    init = ScaledGaussian(seed=keras.random.SeedGenerator(3))
    rebuilt = ScaledGaussian.from_config(init.get_config())
    np.testing.assert_array_equal(init((5, 5)), rebuilt((5, 5)))


def test_get_by_registered_name():
    init = keras.initializers.get("keras_initlab>SparseGaussian")
    assert isinstance(init, SparseGaussian) and init.connections == 10


@pytest.mark.integration
def test_keras_file_reloads_in_a_fresh_process_with_only_import_keras_initlab(tmp_path):
    inputs = keras.Input((12,))
    h = keras.layers.Dense(8, kernel_initializer=ScaledGaussian(seed=1), bias_initializer=BiasConstant(0.01))(inputs)
    h = keras.layers.Dense(6, kernel_initializer=InverseSqrtUniform(seed=2), bias_initializer=BiasConstant(-0.5))(h)
    h = keras.layers.Dense(4, kernel_initializer=SparseGaussian(5, seed=3))(h)
    outputs = keras.layers.Reshape((2, 2, 1))(h)
    outputs = keras.layers.Conv2D(3, 2, kernel_initializer=SparseGaussian(2, seed=4))(outputs)
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "w.npz", *[w.numpy() for w in model.weights])

    script = textwrap.dedent(
        f"""
        import keras, numpy as np
        import keras_initlab
        saved = np.load({str(tmp_path / "w.npz")!r})
        saved = [saved[f"arr_{{i}}"] for i in range(len(saved.files))]
        loaded = keras.saving.load_model({str(tmp_path / "m.keras")!r})
        rebuilt = keras.Model.from_config(loaded.get_config())
        for a, b, c in zip(saved, loaded.weights, rebuilt.weights):
            np.testing.assert_array_equal(a, b.numpy())
            np.testing.assert_array_equal(a, c.numpy())
        print("identical", len(saved))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "identical 8" in result.stdout
