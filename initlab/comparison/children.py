"""The child runs of a comparison before they train: their params (`shared_params`, `child_params`), their
untrained models with step-0 diagnostics (`prepare`, `initial_diagnostics`), and the callback that records
their epochs (`EpochMetricsLogger`).

>>> shared = shared_params(spec, data, device="/CPU:0")                                        # doctest: +SKIP
>>> models, children, steps = prepare(builder, shared, spec.runs()[:2])                 # doctest: +SKIP
"""

from __future__ import annotations

import json

import keras

from initlab.comparison.builder import ModelBuilder
from initlab.messages import one_line
from initlab.plots import to_png
from initlab.spec import ComparisonSpec, FactoryModel, Run
from initlab.tracking import ChildRun, initializer_param
from keras_initlab.data import Dataset
from keras_initlab.models import all_layers
from keras_initlab.watch import step_zero


def model_params(spec: ComparisonSpec) -> dict[str, str]:
    """The spec's model as run parameters: ``sizes``, ``activation``, ``output`` of the MLP; ``kind``,
    ``filters``, ... of the conv net; ``factory`` (and ``loss``) of a factory model."""
    params = {
        key: json.dumps(value) if isinstance(value, list) else value for key, value in spec.model.to_json().items()
    }
    if isinstance(spec.model, FactoryModel):
        params["loss"] = "sparse_categorical_crossentropy" if spec.loss is None else json.dumps(spec.loss)
    return params


def optimizer_params(spec: ComparisonSpec) -> dict[str, str]:
    """`optimizer_config_params` of the spec's optimizer."""
    return optimizer_config_params(spec.build_optimizer())


def optimizer_config_params(optimizer: keras.optimizers.Optimizer) -> dict[str, str]:
    """``optimizer`` (the class name), ``learning_rate`` and ``optimizer_config`` (Keras' full config as
    JSON, without the instance name Keras numbers: equal optimizers, equal params)."""
    config = {k: v for k, v in keras.optimizers.serialize(optimizer)["config"].items() if k != "name"}
    return {
        "optimizer": type(optimizer).__name__,
        "learning_rate": json.dumps(config["learning_rate"])
        if isinstance(config["learning_rate"], dict)
        else config["learning_rate"],
        "optimizer_config": json.dumps(config, sort_keys=True),
    }


def data_params(data: Dataset) -> dict[str, str]:
    """What identifies the data a comparison trains on: its name (with a subset's suffix), shapes and content hash
    (`keras_initlab.data.Dataset.checksum`); ``--resume`` refuses other data by them."""
    return {
        "dataset": data.name,
        "dataset_shapes": f"train {data.x_train.shape}, val {data.x_val.shape}",
        "dataset_hash": data.checksum,
    }


def shared_params(spec: ComparisonSpec, data: Dataset, device: str) -> dict:
    """The params every child run of ``spec`` has in common (computed once per comparison)."""
    return {
        **model_params(spec),
        **data_params(data),
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        **optimizer_params(spec),
        "l2_lambda": spec.l2_lambda,
        "device": device,
    }


def child_params(shared: dict, run: Run, model: keras.Model) -> dict:
    """A child run's params: `run_params` of its scheme, seed and model, and ``shared``."""
    return {**run_params(run.scheme.name, run.seed, model), **shared}


def run_params(scheme: str, seed: int, model: keras.Model) -> dict:
    """What every child run records of itself: its scheme, its first layer's initializers, its size and seed."""
    first = next((layer for layer in model.layers if hasattr(layer, "kernel_initializer")), None)
    return {
        "scheme": scheme,
        "kernel_initializer": initializer_param(first.kernel_initializer) if first else "-",
        "bias_initializer": initializer_param(first.bias_initializer)
        if first and hasattr(first, "bias_initializer")
        else "-",
        "parameters": model.count_params(),
        "seed": seed,
    }


def layer_initializers(model: keras.Model) -> bytes:
    """Every layer's initializers as built (`initlab.tracking.initializer_param`), for a child run's
    ``init/initializers.json``: ``[{"layer": name, "kernel": ..., "bias": ...}, ...]`` (the params hold the first
    layer's only: a deep model's would pass MLflow's limit on a param's length)."""
    layers = [
        {
            "layer": layer.name,
            **{
                part: initializer_param(getattr(layer, f"{part}_initializer"))
                for part in ("kernel", "bias")
                if hasattr(layer, f"{part}_initializer")
            },
        }
        for layer in all_layers(model)
        if hasattr(layer, "kernel_initializer")
    ]
    return (json.dumps(layers, indent=1) + "\n").encode()


def prepare(builder: ModelBuilder, shared: dict, group: list[Run]) -> tuple[list[keras.Model], list[ChildRun], list]:
    """The untrained models of a group of runs, their child runs with the params and the LSUV steps, and those
    steps (`ModelBuilder.initial`)."""
    models, children, steps = [], [], []
    for run in group:
        model, lsuv_steps = builder.initial(run.scheme, run.seed)
        params = child_params(shared, run, model)
        if lsuv_steps is not None:
            params["lsuv_examples"] = builder.lsuv_examples
        child = ChildRun(run.key, params)
        child.files["init/initializers.json"] = layer_initializers(model)
        if lsuv_steps is not None:
            child.add_lsuv(lsuv_steps)
        models.append(model)
        children.append(child)
        steps.append(lsuv_steps)
    return models, children, steps


def prepare_diagnosed(builder: ModelBuilder, shared: dict, group: list[Run], histograms: bool) -> tuple:
    """`prepare`, and the step-0 diagnostics of the models (before they train) in their child runs."""
    models, children, steps = prepare(builder, shared, group)
    record_initial(children, initial_diagnostics(builder, group, models, steps, histograms), builder.watch is not None)
    return models, children, steps


def initial_diagnostics(
    builder: ModelBuilder, group: list[Run], models: list[keras.Model], steps: list, histograms: bool
) -> list[tuple | str]:
    """Per model, ``(table, PNG or None)`` of `ModelBuilder.diagnose`, or why it has none (e.g. an initializer
    whose variance the theory lacks: the run trains without them)."""
    results = []
    for run, model, lsuv_steps in zip(group, models, steps, strict=True):
        try:
            table, figure = builder.diagnose(
                model, lsuv_steps, f"{run.key}: activations at init" if histograms else None
            )
            results.append((table, None if figure is None else to_png(figure)))
        except Exception as e:
            results.append(f"{type(e).__name__}: {one_line(e)}")
    return results


def diagnose_copies(
    builder: ModelBuilder, group: list[Run], weights: list[list], steps: list, histograms: bool
) -> list:
    """`initial_diagnostics` of copies of a group's models, built anew and given the ``weights`` those had before
    training (the models themselves train meanwhile)."""
    copies = []
    for run, model_weights in zip(group, weights, strict=True):
        copy = builder.build(run.scheme, run.seed)
        copy.set_weights(model_weights)
        copies.append(copy)
    return initial_diagnostics(builder, group, copies, steps, histograms)


def record_initial(children: list[ChildRun], results: list[tuple | str], watched: bool) -> None:
    """Adds `initial_diagnostics`' results to the child runs; ``watched``: their values of the watched statistics
    also as step 0 of ``layers/layer<k>/<stat>`` (`keras_initlab.watch.step_zero`)."""
    for child, result in zip(children, results, strict=True):
        if isinstance(result, str):
            child.skip_initial_diagnostics(result)
        else:
            child.add_initial_diagnostics(*result)
            if watched:
                child.add_epoch(0, step_zero(result[0]))


class EpochMetricsLogger(keras.callbacks.Callback):
    """Keras callback adding a run's per-epoch logs to its `initlab.tracking.ChildRun` (written when it ends).

    Epoch ``e`` (0-based in Keras) is logged with ``step = e + 1``.
    """

    def __init__(self, child: ChildRun):
        super().__init__()
        self.child = child

    def on_epoch_end(self, epoch, logs=None):
        self.child.add_epoch(epoch + 1, logs or {})
