"""What is checked before any run exists (`initlab.comparison.preflight`): what the spec, the data, the memory plan
and a factory's model show to be wrong is refused in one line, nothing tracked."""

import re

import pytest
import tensorflow as tf

from conftest import RAISE_LINE, one_error_line, write_factory_spec, write_spec
from initlab.cli import main
from initlab.comparison import run_comparison
from initlab.spec import ComparisonSpec, SpecError

SPARSE = {
    "name": "sp",
    "kernel": {"class_name": "keras_initlab>SparseGaussian", "config": {"connections": 50}},
    "bias": "zeros",
}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"batch_size": 401}, r"batch_size: 401 is larger than the 400 training examples"),
        (
            {"model": {"sizes": [100, 30, 10]}},
            r"model.sizes\[0\]: 100 inputs, but the examples of .* have 28x28x1 = 784",
        ),
        ({"model": {"sizes": [784, 30, 5]}}, r"model.sizes\[-1\]: 5 outputs, but .* has 10 classes; use 10"),
        ({"model": {"sizes": [784, 1000000, 1000000, 10]}}, r"model.sizes: one model needs about \d+ MiB"),
        ({"schemes": [SPARSE]}, r"schemes\[0\] \(sp\): SparseGaussian\(connections=50\) needs fan_in >= 50"),
        ({"subset": {"train": 9000, "val": 10}}, r"subset.train: 9000 examples asked for, but mnist-10k has 8000"),
        ({"dataset": "no_such_dataset_xyz"}, r"dataset: 'no_such_dataset_xyz' cannot be loaded: Unknown dataset name"),
    ]
    + (
        []
        if tf.config.list_physical_devices("GPU")
        else [  # a missing GPU, on a machine without one
            ({"device": "gpu"}, r"device: device='gpu' was asked for, but TensorFlow sees no GPU"),
        ]
    ),
)
def test_what_the_spec_data_and_memory_show_is_refused_before_any_run(tmp_path, capsys, changes, message):
    store = tmp_path / "tracking" / "store.db"
    assert main(["compare", str(write_spec(tmp_path, **changes)), "--tracking-uri", f"sqlite:///{store}"]) == 2
    assert re.search(message, one_error_line(capsys.readouterr().err))
    assert [p.name for p in tmp_path.iterdir()] == ["spec.yaml"]  # no store, no folder, lock file or records: nothing


@pytest.mark.parametrize(
    "model, message",
    [
        (
            {"factory": "models/missing.py:build"},
            r"model.factory: no such file models/missing.py in .* "
            r"\(a factory file's path is relative to the spec's folder\)",
        ),
        ({"factory": "models/factories.py:bulid"}, r"model.factory: .* has no 'bulid'"),
        (
            {"factory": "models/factories.py:raises"},
            rf"model.factory: with scheme he: .*raised RuntimeError: no GPU here \(factories.py, line {RAISE_LINE}\)",
        ),
        (
            {"factory": "models/factories.py:exits"},
            r"model.factory: with scheme he: .*raised SystemExit: 0 \(factories.py, line \d+\)",
        ),
        (
            {"factory": "models/factories.py:not_a_model"},
            r"model.factory: with scheme he: .*returned a str, not a keras.Model",
        ),
        ({"factory": "models/factories.py:wrong_classes"}, r"output shape is \(11,\), not \(10,\)"),
        (
            {"factory": "models/factories.py:logits"},
            r"model.factory: .*outputs on 8 validation images are not class probabilities",
        ),
    ],
)
def test_a_bad_factory_exits_2_before_any_run(factories, capsys, model, message):
    store = factories / "store.db"
    spec = write_factory_spec(factories, model=model)
    before = sorted(factories.iterdir())
    assert main(["compare", str(spec), "--tracking-uri", f"sqlite:///{store}"]) == 2
    assert capsys.readouterr().err.startswith("initlab compare: ")
    with pytest.raises(SpecError, match=message):
        run_comparison(spec, tracking_uri=f"sqlite:///{store}")
    assert sorted(factories.iterdir()) == before  # no store, so no run; no lock file or records folder either


def test_logits_with_a_from_logits_loss_are_accepted(factories, store):
    spec = ComparisonSpec.from_file(
        write_factory_spec(
            factories,
            model={"factory": "models/factories.py:logits"},
            schemes=["he"],
            epochs=1,
            loss={"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": True}},
        )
    )
    outcome = run_comparison(spec, tracking_uri=store())
    assert not outcome.failures and outcome.summary[0].final > 0.5


@pytest.mark.parametrize("experiment", ["a/b", "two\nlines", " ", "x" * 5000])
def test_an_experiment_name_mlflow_would_mangle_is_refused_before_any_run(tmp_path, capsys, experiment):
    store = tmp_path / "store.db"
    spec = str(write_spec(tmp_path, epochs=1))
    assert main(["compare", spec, "--tracking-uri", f"sqlite:///{store}", "--experiment", experiment]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("initlab compare: experiment ") and "without '/'" in line and len(line) < 250
    assert not store.exists()
