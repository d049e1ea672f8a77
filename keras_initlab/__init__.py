"""keras_initlab: the Keras library of keras-initlab: weight initializers, schemes, their theory, models,
training and diagnostics, for your own Keras code. Importing it registers the initializers with Keras
(``keras.saving.load_model`` reads them back). Comparisons tracked in MLflow, Ray and the ``initlab`` command
are the application, the package `initlab`, built on this one (which never imports it).

>>> import keras_initlab as kil
>>> kernel, bias = kil.get_scheme("nielsen-default", seed=0)
>>> w = kil.ScaledGaussian(gain=1.0, seed=0)(shape=(784, 30))
"""

from keras_initlab._version import __version__ as __version__  # the package's version, re-exported
from keras_initlab.backend import BackendError
from keras_initlab.data import Dataset, load_dataset
from keras_initlab.diagnostics import DiagnosticsTable, diagnose
from keras_initlab.initializers import (
    BiasConstant,
    InverseSqrtUniform,
    ScaledGaussian,
    SparseGaussian,
    compute_fans,
)
from keras_initlab.lsuv import LSUVStep, lsuv
from keras_initlab.models import build_convnet, build_mlp
from keras_initlab.schemes import Scheme, get_scheme, list_schemes
from keras_initlab.theory import predicted_preactivation_std, weight_variance
from keras_initlab.training import NonFiniteLossError, train, train_stacked
from keras_initlab.watch import LayerWatch, WatchLayers

MOVED_TO_APPLICATION = ("ComparisonSpec", "SpecError", "run_comparison")
"""Names exported here before 0.5.0, now the application's: ``from initlab import NAME``."""


APPLICATION_NAMES = ("Comparison",)
"""Names of the application that users look for here: ``from initlab import NAME``."""


def __getattr__(name: str):
    if name in MOVED_TO_APPLICATION:
        raise AttributeError(
            f"keras_initlab.{name} moved to the application package in 0.5.0: use "
            f"`from initlab import {name}` (the library never imports the application)"
        )
    if name in APPLICATION_NAMES:
        raise AttributeError(
            f"keras_initlab.{name} is the application's (it tracks in MLflow): use "
            f"`from initlab import {name}` (the library never imports the application)"
        )
    raise AttributeError(f"module 'keras_initlab' has no attribute {name!r}")


__all__ = [
    "BackendError",
    "BiasConstant",
    "Dataset",
    "DiagnosticsTable",
    "NonFiniteLossError",
    "InverseSqrtUniform",
    "LSUVStep",
    "LayerWatch",
    "ScaledGaussian",
    "SparseGaussian",
    "Scheme",
    "WatchLayers",
    "build_convnet",
    "build_mlp",
    "compute_fans",
    "diagnose",
    "get_scheme",
    "list_schemes",
    "load_dataset",
    "lsuv",
    "predicted_preactivation_std",
    "train",
    "train_stacked",
    "weight_variance",
]
