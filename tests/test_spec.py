"""The spec schema (`initlab.spec`): every key checked before anything runs, errors naming the key path, and hashes
that keep older specs' parent runs."""

import pytest

from initlab.spec import ComparisonSpec, SpecError, SpecTypeError
from keras_initlab.models import load_factory

from conftest import FACTORY_SPEC, write_factory_spec, write_spec


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"schemes": ["nielsen-default", "he", "sparce10"]}, r"schemes\[2\]: unknown scheme 'sparce10'; known: .*sparse10"),
        ({"epochs": "30"}, "epochs: must be an int between 1 and 100000; got '30'"),
        ({"learning_rate": -1}, r"learning_rate: must be a positive finite number; got -1"),
        ({"seeds": [0, "a"]}, r"seeds\[1\]: must be an int between 0 and 4294967295"),
        ({"model": {"sizes": [784, 30, 10], "activaton": "relu"}}, r"model.activaton: unknown key"),
        ({"batchsize": 10}, r"batchsize: unknown key; allowed: "),
        ({"model": {"sizes": [784]}}, r"model.sizes: must be a list of 2 to 1001 int\(s\) between 1 and 1000000"),
        ({"model": {"output": "tanh"}}, r"model.output: must be one of \('sigmoid', 'softmax'\); got 'tanh'"),
        ({"device": "tpu"}, r"device: must be one of \('auto', 'cpu', 'gpu'\); got 'tpu'"),
        ({"schemes": [{"name": "x", "kernel": "nope", "bias": "zeros"}]}, r"schemes\[0\].kernel: not a Keras initializer"),
        ({"schemes": [{"name": "x", "kernel": "zeros"}]}, r"schemes\[0\]: an explicit scheme needs exactly the keys"),
        ({"schemes": ["he", "he"]}, r"schemes: names must not repeat"),
        ({"schemes": [{"name": "he+zero", "kernel": "he_normal", "bias": "zeros"}]},
         r"schemes\[0\].name: must be a name of at most 100 letters, digits, '_', '.', '-'"),
        ({"name": "../elsewhere"}, r"name: must be a name of at most 100 letters"),
        ({"subset": {"train": 0, "val": 10}}, r"subset.train: must be an int >= 1"),
    ],
)
def test_bad_specs_are_rejected_with_the_key_path(tmp_path, changes, message):
    with pytest.raises(SpecError, match=message):
        ComparisonSpec.from_file(write_spec(tmp_path, **changes))


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"l2_lambda": "5"}, SpecTypeError, r"^l2_lambda: must be a finite number >= 0; got '5'$"),
        ({"epochs": 2.0}, SpecTypeError, r"^epochs: must be an int between 1 and 100000; got 2.0$"),
        ({"model": {"sizes": [784, True, 10]}}, SpecTypeError,
         r"^model.sizes\[1\]: must be an int between 1 and 1000000; got True$"),
        ({"model": [784, 10]}, SpecTypeError, r"^model: must be a mapping"),
        ({"schemes": "he"}, SpecTypeError, r"^schemes: must be a list of 1 to 100 item\(s\); got 'he'$"),
        ({"epochs": 0}, SpecError, r"^epochs: must be an int between 1 and 100000; got 0$"),
        ({"l2_lambda": 10**400}, SpecError, r"^l2_lambda: must be a finite number >= 0; got 1000"),
        ({"name": "x " * 5_000}, SpecError, r"^name: must be a name of at most 100 letters.*\(10002 characters\)$"),
    ],
)
def test_spec_values_wrap_the_same_checks_with_the_key_path(changes, error, message):
    raw = {"name": "demo", "schemes": ["he"], **changes}
    with pytest.raises(error, match=message) as info:
        ComparisonSpec.from_dict(raw)
    assert isinstance(info.value, SpecError)  # the command line catches every spec error as one kind
    assert isinstance(info.value, TypeError) == (error is SpecTypeError)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"optimizer": "adamm"}, r"optimizer: not an optimizer Keras knows: Could not interpret optimizer identifier: adamm"),
        ({"optimizer": {"class_name": "SGD", "config": {"momentun": 0.9}}}, r"optimizer: not an optimizer .*momentun"),
        ({"optimizer": 3}, r"optimizer: must be an optimizer name or a Keras config \{class_name, config\}; got 3"),
        ({"optimizer": "adam", "learning_rate": 0.1}, r"learning_rate: give it inside the optimizer's config"),
        ({"loss": "nope"}, r"loss: not a loss Keras knows"),
        ({"l2_lambda": 5.0}, r"l2_lambda: a factory builds its own layers; give them kernel_regularizer"),
        ({"model": {"factory": "models/factories.py:build", "sizes": [784, 10]}}, r"model.sizes: unknown key; allowed: factory"),
        ({"model": {"factory": 3}}, r"model.factory: must be 'file.py:function', 'package.module:function' or a function"),
        ({"model": {"kind": "resnet"}}, r"model.kind: must be one of \('mlp', 'convnet'\); got 'resnet'"),
        ({"model": {"kind": "convnet", "sizes": [784, 10]}}, r"model.sizes: unknown key; allowed: activation, filters, kind, output"),
        ({"model": {"kind": "convnet", "filters": [8]}}, r"model.filters: must be a list of 2 int\(s\) between 1 and 1000000; got \[8\]"),
        ({"model": {"sizes": [784, 10]}, "loss": "mse"}, r"loss: only for a factory model; the loss of the built-in MLP"),
    ],
)
def test_bad_model_optimizer_and_loss_keys(factories, changes, message):
    with pytest.raises(SpecError, match=message):
        ComparisonSpec.from_file(write_factory_spec(factories, **changes))


def test_a_function_given_in_python_is_recorded_by_name_and_kept_by_replace(factories):
    build = load_factory("models/factories.py:build", factories)
    spec = ComparisonSpec.from_dict({**FACTORY_SPEC, "model": {"factory": build}})
    assert spec.to_json()["model"] == {"factory": f"{build.__module__}:build"}
    assert spec.replace(epochs=1).model.factory is build
    assert spec.replace(epochs=1).hash == ComparisonSpec.from_dict({**FACTORY_SPEC, "epochs": 1, "model": {"factory": build}}).hash


def test_older_specs_keep_their_hash():
    """Keys added later appear in the hashed JSON only when set: --resume still finds older parents."""
    spec = ComparisonSpec.from_dict({"name": "nielsen", "schemes": ["he"]})
    assert set(spec.to_json()) == {"name", "dataset", "model", "schemes", "seeds", "epochs", "batch_size",
                                   "learning_rate", "l2_lambda", "device"}
    assert spec.to_json()["model"] == {"sizes": [784, 30, 10], "activation": "sigmoid", "output": "sigmoid"}
