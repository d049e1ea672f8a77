"""What ``initlab list`` shows of the library without importing it (`initlab.catalog`) is what the library says."""

import keras

import keras_initlab
from initlab import catalog


def test_the_schemes_read_from_the_source_are_the_librarys():
    assert catalog.schemes() == keras_initlab.list_schemes()


def test_the_initializers_read_from_the_source_are_the_registered_ones_with_their_summaries():
    registered = {
        name.split(">")[1]: cls
        for name, cls in keras.saving.get_custom_objects().items()
        if name.startswith("keras_initlab>")
    }
    assert list(catalog.initializers()) == ["ScaledGaussian", "InverseSqrtUniform", "SparseGaussian", "BiasConstant"]
    assert catalog.initializers() == {
        name: registered[name].__doc__.strip().splitlines()[0] for name in catalog.initializers()
    }
