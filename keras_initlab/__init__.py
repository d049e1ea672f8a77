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
from keras_initlab.schemes import get_scheme, list_schemes

__all__ = [
    "BiasConstant",
    "InverseSqrtUniform",
    "ScaledGaussian",
    "SparseGaussian",
    "compute_fans",
    "get_scheme",
    "list_schemes",
]
