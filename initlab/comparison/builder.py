"""`ModelBuilder`: the untrained model of any (scheme, seed) run of a spec, the loss that trains it, and its
step-0 diagnostics on the comparison's fixed batch (`diagnostic_batch`).

>>> builder = ModelBuilder(spec, data)                                  # doctest: +SKIP
>>> model, lsuv_steps = builder.initial(spec.schemes[0], seed=0)        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import keras

from initlab.plots import diagnose_with_histograms
from initlab.spec import ComparisonSpec, ConvNetModel, FactoryModel, MLPModel, SchemeSpec, SpecError
from keras_initlab.data import Dataset
from keras_initlab.diagnostics import diagnose, diagnosed_layers
from keras_initlab.lsuv import LSUVStep, lsuv
from keras_initlab.models import FactoryError, build_convnet, build_from_factory, build_mlp, default_loss, load_factory
from keras_initlab.schemes import LSUV, Scheme
from keras_initlab.watch import LayerWatch

DIAGNOSTIC_EXAMPLES = 1000
"""How many validation examples (the first ones) the diagnostics at initialization use."""


def diagnostic_batch(data: Dataset) -> tuple:
    """``(x, y)``: the first `DIAGNOSTIC_EXAMPLES` validation examples, the same for every run."""
    n = min(DIAGNOSTIC_EXAMPLES, data.n_val)
    return data.x_val[:n], data.y_val[:n]


class ModelBuilder:
    """Builds the untrained model of any (scheme, seed) run of a spec, and the loss that trains it.

    A factory is loaded once, here (`keras_initlab.models.load_factory`); a factory that
    cannot be loaded is a `SpecError` on ``model.factory``.
    """

    def __init__(self, spec: ComparisonSpec, data: Dataset):
        self.spec, self.data = spec, data
        self.factory = None
        if isinstance(spec.model, FactoryModel):
            try:
                self.factory = load_factory(spec.model.factory, spec.base_dir)
            except FactoryError as e:
                raise SpecError(f"model.factory: {e}") from None

    def build(self, scheme: SchemeSpec, seed: int) -> keras.Model:
        """The model of one run, initialized by ``scheme`` with ``seed``."""
        model, data = self.spec.model, self.data
        if isinstance(model, MLPModel):
            return build_mlp(
                model.sizes,
                model.activation,
                model.output,
                scheme.initializers(),
                l2_lambda=self.spec.l2_lambda,
                n_train=data.n_train,
                seed=seed,
            )
        if isinstance(model, ConvNetModel):
            return build_convnet(
                data.image_shape,
                model.filters,
                data.num_classes,
                model.activation,
                model.output,
                scheme.initializers(),
                l2_lambda=self.spec.l2_lambda,
                n_train=data.n_train,
                seed=seed,
            )
        return build_from_factory(self.factory, Scheme(scheme.initializers(), seed), data.image_shape, data.num_classes)

    def initial(self, scheme: SchemeSpec, seed: int) -> tuple[keras.Model, list[LSUVStep] | None]:
        """The model a run starts from, and what `keras_initlab.lsuv` did to it (``None`` but for ``lsuv``).

        `build`, then the scheme's data-dependent step: for ``lsuv``, `keras_initlab.lsuv` on the
        first `lsuv_examples` training examples.
        """
        model = self.build(scheme, seed)
        if scheme.name != LSUV:
            return model, None
        return model, lsuv(model, self.data.x_train[: self.lsuv_examples])

    def diagnose(self, model: keras.Model, lsuv_steps: list[LSUVStep] | None, title: str | None = None) -> tuple:
        """``(table, figure)``: `keras_initlab.diagnostics.diagnose` on `diagnostic_batch`, with the loss that
        trains the model (no predicted std for weights LSUV set from data), and with a ``title`` the activation
        histograms from the same forward pass (`diagnose_with_histograms`); without one, the figure is ``None``."""
        x, y = diagnostic_batch(self.data)
        if title is None:
            return diagnose(model, x, y, loss=self.loss(model), predict=lsuv_steps is None), None
        return diagnose_with_histograms(model, x, y, loss=self.loss(model), predict=lsuv_steps is None, title=title)

    @functools.cached_property
    def depth(self) -> int:
        """How many Dense/Conv layers the spec's model has (`keras_initlab.diagnostics.diagnosed_layers`): the MLP's
        number of sizes less one, else counted on a model built for it."""
        if isinstance(self.spec.model, MLPModel):
            return len(self.spec.model.sizes) - 1
        return len(diagnosed_layers(self.example))

    @functools.cached_property
    def example(self) -> keras.Model:
        """A model of the spec's architecture (its first scheme and seed), for what every run's model shares."""
        return self.build(self.spec.schemes[0], self.spec.seeds[0])

    @functools.cached_property
    def watch(self) -> LayerWatch | None:
        """The spec's `keras_initlab.watch.LayerWatch`: every ``watch`` epochs on `diagnostic_batch` (so that step 0
        is the diagnostics'); ``None`` for ``watch: false``."""
        return LayerWatch(*diagnostic_batch(self.data), every=self.spec.watch) if self.spec.watch else None

    @property
    def lsuv_examples(self) -> int:
        """How many examples the ``lsuv`` scheme rescales on: the spec's ``lsuv_examples``, at most the training set."""
        return min(self.spec.lsuv_examples, self.data.n_train)

    def loss(self, model: keras.Model) -> Callable:
        """The spec's ``loss``; for a factory without one, sparse categorical cross-entropy; for the
        built-in models, the loss of their output (`keras_initlab.models.default_loss`)."""
        if self.spec.loss is not None:
            return keras.losses.get(copy.deepcopy(self.spec.loss))
        if self.factory is not None:
            return keras.losses.sparse_categorical_crossentropy
        return default_loss(model)
