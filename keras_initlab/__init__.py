"""keras-initlab: study neural-network weight initialization with Keras 3, tracked in MLflow.

>>> import keras_initlab as kil
>>> kernel, bias = kil.get_scheme("nielsen-default", seed=0)
>>> w = kil.ScaledGaussian(gain=1.0, seed=0)(shape=(784, 30))
"""

from keras_initlab._version import __version__
from keras_initlab.backend import BackendError
from keras_initlab.initializers import (
    BiasConstant,
    InverseSqrtUniform,
    ScaledGaussian,
    SparseGaussian,
    compute_fans,
)
from keras_initlab.data import Dataset, load_dataset
from keras_initlab.diagnostics import DiagnosticsTable, diagnose
from keras_initlab.lsuv import LSUVStep, lsuv
from keras_initlab.models import build_convnet, build_mlp
from keras_initlab.schemes import Scheme, get_scheme, list_schemes
from keras_initlab.spec import ComparisonSpec, SpecError
from keras_initlab.theory import predicted_preactivation_std, weight_variance
from keras_initlab.training import NonFiniteLossError, train, train_stacked


def __getattr__(name: str):
    # run_comparison brings the tracking, plotting and report modules: loaded on first use, so that
    # `import keras_initlab` for the initializers stays as light as it was.
    if name == "run_comparison":
        from keras_initlab.comparison import run_comparison

        return run_comparison
    raise AttributeError(f"module 'keras_initlab' has no attribute {name!r}")


__all__ = [
    "BackendError",
    "BiasConstant",
    "ComparisonSpec",
    "Dataset",
    "DiagnosticsTable",
    "NonFiniteLossError",
    "InverseSqrtUniform",
    "LSUVStep",
    "ScaledGaussian",
    "SparseGaussian",
    "Scheme",
    "SpecError",
    "build_convnet",
    "build_mlp",
    "compute_fans",
    "diagnose",
    "get_scheme",
    "list_schemes",
    "load_dataset",
    "lsuv",
    "predicted_preactivation_std",
    "run_comparison",
    "train",
    "train_stacked",
    "weight_variance",
]
