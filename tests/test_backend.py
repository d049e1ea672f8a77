"""The TensorFlow boundary, on a real second backend: under KERAS_BACKEND=jax the initializers,
models and forward diagnostics work, and every TensorFlow-only entry point fails with one clear error."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from keras_initlab.backend import BackendError, require_tensorflow

REPO = Path(__file__).resolve().parents[1]

UNDER_JAX = r"""
import json, sys
import keras
import keras_initlab as kil
import initlab
from initlab.cli import main

out = {"backend": keras.backend.backend()}
data = kil.load_dataset("mnist-10k").subset(100, 50)
model = kil.build_mlp([784, 30, 10], scheme="sparse10", seed=0)
out["kernel_nonzeros"] = int((keras.ops.convert_to_numpy(model.layers[1].kernel) != 0).sum())
out["diagnosed_layers"] = len(kil.diagnose(model, data.x_val))
errors = {}
spec = {"name": "x", "schemes": ["he"]}
for name, call in [
    ("train", lambda: kil.train(model, data, epochs=1)),
    ("train_stacked", lambda: kil.train_stacked([model, kil.build_mlp(seed=1)], data, epochs=1)),
    ("diagnose_with_labels", lambda: kil.diagnose(model, data.x_val, data.y_val)),
    ("run_comparison", lambda: initlab.run_comparison(initlab.ComparisonSpec.from_dict(spec), sys.argv[1])),
]:
    try:
        call()
    except kil.BackendError as e:
        errors[name] = str(e)
out["errors"] = errors
out["compare_status"] = main(["compare", sys.argv[2], "--tracking-uri", sys.argv[1]])
print("RESULT " + json.dumps(out))
"""


@pytest.mark.integration
def test_tensorflow_only_features_fail_clearly_under_jax(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: tiny\nschemes: [he]\nepochs: 1\nsubset: {train: 100, val: 50}\n")
    store = tmp_path / "store.db"
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", UNDER_JAX, f"sqlite:///{store}", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["backend"] == "jax"
    assert result["kernel_nonzeros"] == 10 * 30  # an initializer drew on JAX
    assert result["diagnosed_layers"] == 2  # forward diagnostics need no TensorFlow
    assert set(result["errors"]) == {"train", "train_stacked", "diagnose_with_labels", "run_comparison"}
    for message in result["errors"].values():
        assert "the active backend is 'jax'" in message and "KERAS_BACKEND=tensorflow" in message
    assert result["compare_status"] == 2
    compare_errors = [line for line in done.stderr.splitlines() if line.startswith("initlab compare:")]
    assert len(compare_errors) == 1 and "needs the TensorFlow backend" in compare_errors[0]
    assert not store.exists()  # refused before any run was tracked


def test_require_tensorflow_follows_the_active_backend():
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(BackendError, match=keras.backend.backend()):
            require_tensorflow("train")
    else:
        require_tensorflow("train")  # no error: the active backend is the one needed
