"""The spec schema (`initlab.spec`): every key checked before anything runs, errors naming the key path, and hashes
that keep older specs' parent runs."""

import re
import time

import pytest

from conftest import FACTORY_SPEC, RANDOM_NORMAL, one_error_line, write_factory_spec, write_spec
from initlab.cli import main
from initlab.spec import ComparisonSpec, SpecError, SpecTypeError
from keras_initlab.models import load_factory


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"schemes": ["nielsen-default", "he", "sparce10"]},
            r"schemes\[2\]: unknown scheme 'sparce10'; known: .*sparse10",
        ),
        ({"epochs": "30"}, "epochs: must be an int between 1 and 100000; got '30'"),
        ({"learning_rate": -1}, r"learning_rate: must be a positive finite number; got -1"),
        ({"seeds": [0, "a"]}, r"seeds\[1\]: must be an int between 0 and 4294967295"),
        ({"model": {"sizes": [784, 30, 10], "activaton": "relu"}}, r"model.activaton: unknown key"),
        ({"batchsize": 10}, r"batchsize: unknown key; allowed: "),
        ({"model": {"sizes": [784]}}, r"model.sizes: must be a list of 2 to 1001 int\(s\) between 1 and 1000000"),
        ({"model": {"output": "tanh"}}, r"model.output: must be one of \('sigmoid', 'softmax'\); got 'tanh'"),
        ({"device": "tpu"}, r"device: must be one of \('auto', 'cpu', 'gpu'\); got 'tpu'"),
        (
            {"schemes": [{"name": "x", "kernel": "nope", "bias": "zeros"}]},
            (
                r"schemes\[0\].kernel: Keras cannot build this initializer: "
                r"Could not interpret initializer identifier: nope; "
                r"allowed: an initializer name"
            ),
        ),
        ({"schemes": [{"name": "x", "kernel": "zeros"}]}, r"schemes\[0\]: an explicit scheme needs exactly the keys"),
        ({"schemes": ["he", "he"]}, r"schemes: names must not repeat"),
        (
            {"schemes": [{"name": "he+zero", "kernel": "he_normal", "bias": "zeros"}]},
            r"schemes\[0\].name: must be a name of at most 100 letters, digits, '_', '.', '-'",
        ),
        ({"name": "../elsewhere"}, r"name: must be a name of at most 100 letters"),
        ({"subset": {"train": 0, "val": 10}}, r"subset.train: must be an int >= 1"),
        ({"watch": "yes"}, r"watch: must be true, false or a mapping \{every: N\}; got 'yes'"),
        ({"watch": {"each": 2}}, r"watch: must have exactly the key every \(watch: \{every: 5\}\); got \['each'\]"),
        ({"watch": {"every": 0}}, r"watch.every: must be an int between 1 and 100000; got 0"),
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
        (
            {"model": {"sizes": [784, True, 10]}},
            SpecTypeError,
            r"^model.sizes\[1\]: must be an int between 1 and 1000000; got True$",
        ),
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
        (
            {"optimizer": "adamm"},
            r"optimizer: not an optimizer Keras knows: Could not interpret optimizer identifier: adamm",
        ),
        ({"optimizer": {"class_name": "SGD", "config": {"momentun": 0.9}}}, r"optimizer: not an optimizer .*momentun"),
        ({"optimizer": 3}, r"optimizer: must be an optimizer name or a Keras config \{class_name, config\}; got 3"),
        ({"optimizer": "adam", "learning_rate": 0.1}, r"learning_rate: give it inside the optimizer's config"),
        ({"loss": "nope"}, r"loss: not a loss Keras knows"),
        ({"l2_lambda": 5.0}, r"l2_lambda: a factory builds its own layers; give them kernel_regularizer"),
        (
            {"model": {"factory": "models/factories.py:build", "sizes": [784, 10]}},
            r"model.sizes: unknown key; allowed: factory",
        ),
        (
            {"model": {"factory": 3}},
            r"model.factory: must be 'file.py:function', 'package.module:function' or a function",
        ),
        ({"model": {"kind": "resnet"}}, r"model.kind: must be one of \('mlp', 'convnet'\); got 'resnet'"),
        (
            {"model": {"kind": "convnet", "sizes": [784, 10]}},
            r"model.sizes: unknown key; allowed: activation, filters, kind, output",
        ),
        (
            {"model": {"kind": "convnet", "filters": [8]}},
            r"model.filters: must be a list of 2 int\(s\) between 1 and 1000000; got \[8\]",
        ),
        (
            {"model": {"sizes": [784, 10]}, "loss": "mse"},
            r"loss: only for a factory model; the loss of the built-in MLP",
        ),
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
    assert (
        spec.replace(epochs=1).hash
        == ComparisonSpec.from_dict({**FACTORY_SPEC, "epochs": 1, "model": {"factory": build}}).hash
    )


def test_older_specs_keep_their_hash():
    """Keys added later appear in the hashed JSON only when set: --resume still finds older parents."""
    spec = ComparisonSpec.from_dict({"name": "nielsen", "schemes": ["he"]})
    assert set(spec.to_json()) == {
        "name",
        "dataset",
        "model",
        "schemes",
        "seeds",
        "epochs",
        "batch_size",
        "learning_rate",
        "l2_lambda",
        "device",
    }
    assert spec.to_json()["model"] == {"sizes": [784, 30, 10], "activation": "sigmoid", "output": "sigmoid"}


@pytest.mark.parametrize("watch, every, written", [(True, 1, None), (False, 0, False), ({"every": 3}, 3, {"every": 3})])
def test_the_watch_key_reads_true_false_or_every_n_epochs_and_is_written_only_when_not_the_default(
    watch, every, written
):
    spec = ComparisonSpec.from_dict({"name": "demo", "schemes": ["he"], "watch": watch})
    assert spec.watch == every and spec.to_json().get("watch") == written
    assert ComparisonSpec.from_dict(spec.to_json()) == spec
    assert (spec.hash == ComparisonSpec.from_dict({"name": "demo", "schemes": ["he"]}).hash) == (every == 1)


SCHEDULE = {
    "module": "keras.optimizers.schedules",
    "class_name": "ExponentialDecay",
    "config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9},
}


def sgd(learning_rate) -> dict:
    return {"class_name": "SGD", "config": {"learning_rate": learning_rate, "momentum": 0.9}}


@pytest.mark.parametrize(
    "optimizer, message",
    [
        (sgd(-1.0), r"^optimizer.config.learning_rate: must be a positive finite number; got -1.0$"),
        (sgd(0.0), r"^optimizer.config.learning_rate: must be a positive finite number; got 0.0$"),
        (sgd(float("nan")), r"^optimizer.config.learning_rate: must be a positive finite number; got nan$"),
        (
            {"class_name": "Adam", "config": {"learning_rate": float("inf")}},
            r"^optimizer.config.learning_rate: must be a positive finite number; got inf$",
        ),
        (
            sgd({**SCHEDULE, "config": {**SCHEDULE["config"], "initial_learning_rate": -0.1}}),
            r"^optimizer.config.learning_rate: the schedule's rate at the first step is -0.1; "
            r"it must be a positive finite",
        ),
    ],
)
def test_an_optimizer_whose_learning_rate_is_not_positive_is_refused(optimizer, message):
    """A negative rate climbs the loss (gradient ascent), zero never moves, NaN and inf destroy the weights at once."""
    with pytest.raises(SpecError, match=message):
        ComparisonSpec.from_dict({"name": "demo", "schemes": ["he"], "optimizer": optimizer})


@pytest.mark.parametrize("optimizer", ["adam", sgd(0.01), sgd(SCHEDULE)])
def test_optimizer_names_rates_and_schedules_are_accepted(optimizer):
    spec = ComparisonSpec.from_dict({"name": "demo", "schemes": ["he"], "optimizer": optimizer})
    assert spec.optimizer == optimizer and spec.build_optimizer().learning_rate > 0


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "kernel: {class_name: RandomNormal, config: {stddev: .nan}}\n  bias: zeros",
            r"^schemes\[0\].kernel.config.stddev: must be a finite number; got nan$",
        ),
        (
            "kernel: he_normal\n  bias: {class_name: Constant, config: {value: -.inf}}",
            r"^schemes\[0\].bias.config.value: must be a finite number; got -inf$",
        ),
        (
            "kernel: {class_name: keras_initlab>ScaledGaussian, config: {gain: .inf}}\n  bias: zeros",
            r"^schemes\[0\].kernel.config.gain: must be a finite number; got inf$",
        ),
    ],
)
def test_an_initializer_config_holding_nan_or_inf_is_refused(tmp_path, text, message):
    (tmp_path / "spec.yaml").write_text(f"name: demo\nschemes:\n- name: mine\n  {text}\n")
    with pytest.raises(SpecError, match=message):
        ComparisonSpec.from_file(tmp_path / "spec.yaml")


@pytest.mark.parametrize(
    "kernel, message",
    [
        (
            {"class_name": "RandomNormal", "config": {"stdev": 0.1}},
            (
                r"^schemes\[0\].kernel: Keras cannot build this initializer: "
                r"RandomNormal.__init__\(\) got an unexpected "
                r"keyword argument 'stdev'; RandomNormal's config takes mean, stddev, seed$"
            ),
        ),
        (
            {"class_name": "keras_initlab>ScaledGaussian", "config": {"gian": 1.0}},
            r"^schemes\[0\].kernel: .*'gian'; keras_initlab>ScaledGaussian's config takes gain, mode, seed$",
        ),
        (
            {"class_name": "VarianceScaling", "config": {"scale": -1}},
            (
                r"^schemes\[0\].kernel: Keras cannot build this initializer: Argument `scale` must be positive float. "
                r"Received: scale=-1; VarianceScaling's config takes scale, mode, distribution, seed"
            ),
        ),
        (
            {"class_name": "RandomNormall", "config": {}},
            (
                r"^schemes\[0\].kernel: Keras cannot build this initializer: .*RandomNormall.*; "
                r"allowed: an initializer "
                r"name \(he_normal; keras_initlab>NAME: initlab list\) or a Keras config \{class_name, config\}$"
            ),
        ),
    ],
)
def test_a_bad_initializer_config_is_one_line_with_keras_reason_and_what_is_allowed(kernel, message):
    with pytest.raises(SpecError, match=message) as info:
        ComparisonSpec.from_dict({"name": "demo", "schemes": [{"name": "mine", "kernel": kernel, "bias": "zeros"}]})
    assert "\n" not in str(info.value)


LONG = "z" * 5000


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"schemes": [LONG]}, r"^schemes\[0\]: unknown scheme 'z{79}\.\.\. \(5002 characters\); known: "),
        (
            {"schemes": [{**RANDOM_NORMAL, "name": LONG}]},
            r"^schemes\[0\].name: must be a name of at most 100 .*; got 'z{79}",
        ),
        (
            {"schemes": [{**RANDOM_NORMAL, "name": "z" * 100}, {**RANDOM_NORMAL, "name": "z" * 100}]},
            r"^schemes: names must not repeat; got \['z{78}\.\.\. \(208 characters\)$",
        ),
        (
            {"schemes": [{**RANDOM_NORMAL, "kernel": LONG}]},
            r"^schemes\[0\].kernel: Keras cannot build this initializer: "
            r"Could not interpret initializer identifier: z+\.\.\.",
        ),
        (
            {"schemes": [{**RANDOM_NORMAL, "kernel": {"class_name": "RandomNormal", "config": {LONG: 1}}}]},
            r"^schemes\[0\].kernel: Keras cannot build this initializer: RandomNormal.__init__\(\) got an unexpected",
        ),
        (
            {"dataset": LONG},
            r"^dataset: must be a dataset name \(mnist-10k, mnist, keras:NAME, a TensorFlow Datasets name\) "
            r"or {npz: PATH}, of at most 100 characters; got 'z{79}\.\.\. \(5002 characters\)$",
        ),
        ({LONG: 1}, r"^z{80}\.\.\. \(5000 characters\): unknown key; allowed: "),
        ({"model": {"sizes": [784, 10], LONG: 1}}, r"^model.z{80}\.\.\. \(5000 characters\): unknown key"),
        ({"model": {"activation": LONG}}, r"^model.activation: unknown activation 'z{79}\.\.\. \(5002 characters\)$"),
        (
            {"model": {"factory": LONG}},
            r"^model.factory: must be 'file.py:function', .*; got 'z{79}\.\.\. \(5002 characters\)$",
        ),
        (
            {"model": {"factory": LONG + ".py:build"}},
            r"^model.factory: cannot read .*z\.\.\. \(\d+ characters\) \(File name too long\)$",
        ),
        (
            {"optimizer": LONG},
            r"^optimizer: not an optimizer Keras knows: Could not interpret optimizer identifier: z+\.\.\.",
        ),
        (
            {"optimizer": sgd(LONG)},
            r"^optimizer.config.learning_rate: must be a positive finite number; got 'z{79}\.\.\.",
        ),
    ],
)
def test_an_error_shows_at_most_80_characters_of_a_value(changes, message):
    """The README's promise: a 5,000-character value is never echoed whole, wherever it is given."""
    with pytest.raises(SpecError, match=message) as info:
        ComparisonSpec.from_dict({"name": "demo", "schemes": ["he"], **changes})
    assert not re.search("z{81}", str(info.value)) and "\n" not in str(info.value)


def test_compare_refuses_a_data_dir_without_mnist_at_once_before_any_run(tmp_path, capsys, monkeypatch):
    """An explicit ``data_dir`` is the one place looked at: not another copy, not a TensorFlow Datasets download
    (which hangs for minutes offline)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store.db"
    (tmp_path / "data").mkdir()
    lacking = r"no train-images-idx3-ubyte\[\.gz\] \+ train-labels-idx1-ubyte\[\.gz\], no mnist\.npz"
    for data_dir, reason in (("missing", "no such directory"), ("data", lacking)):
        spec = write_spec(tmp_path, dataset="mnist", data_dir=data_dir)
        started = time.monotonic()
        assert main(["compare", str(spec), "--tracking-uri", f"sqlite:///{store}"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert re.fullmatch(
            rf"initlab compare: dataset: 'mnist' cannot be loaded: data_dir '{data_dir}': {reason}; "
            r"for 'mnist' it must hold train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz .* "
            r"or Keras' mnist.npz",
            line,
        )
        assert time.monotonic() - started < 20
        assert not store.exists()  # no store, no experiment, no run
