"""keras-initlab: study neural-network weight initialization with Keras 3, tracked in MLflow.

>>> import keras_initlab as kil
>>> kernel, bias = kil.get_scheme("nielsen-default", seed=0)
>>> w = kil.ScaledGaussian(gain=1.0, seed=0)(shape=(784, 30))
"""

__version__ = "0.1.0"

from keras_initlab.initializers import (
    BiasConstant,
    InverseSqrtUniform,
    ScaledGaussian,
    SparseGaussian,
    compute_fans,
)
from keras_initlab.data import Dataset, load_dataset
from keras_initlab.diagnostics import DiagnosticsTable, diagnose
from keras_initlab.experiment import ComparisonSpec, run_comparison
from keras_initlab.models import build_convnet, build_mlp
from keras_initlab.schemes import get_scheme, list_schemes
from keras_initlab.stacked import train_stacked
from keras_initlab.theory import predicted_preactivation_std, weight_variance
from keras_initlab.training import NonFiniteLossError, train

__all__ = [
    "BiasConstant",
    "ComparisonSpec",
    "Dataset",
    "DiagnosticsTable",
    "NonFiniteLossError",
    "InverseSqrtUniform",
    "ScaledGaussian",
    "SparseGaussian",
    "build_convnet",
    "build_mlp",
    "compute_fans",
    "diagnose",
    "get_scheme",
    "list_schemes",
    "load_dataset",
    "predicted_preactivation_std",
    "run_comparison",
    "train",
    "train_stacked",
    "weight_variance",
]
