"""`initlab compare` end to end against real MLflow stores: SQLite, a real server, resume after SIGINT."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import free_port
from keras_initlab.cli import main
from keras_initlab.diagnostics import diagnose
from keras_initlab.comparison import ModelBuilder, diagnostic_batch, load_spec_data, run_comparison
from keras_initlab.spec import ComparisonSpec, SpecError
from keras_initlab.report import summarize
from keras_initlab.tracking import BACKGROUND_SWITCH_INTERVAL, quick_gil_handoff
from keras_initlab.training import stacked

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "dataset": "mnist-10k",
    "subset": {"train": 400, "val": 200},
    "model": {"sizes": [784, 30, 10], "activation": "sigmoid", "output": "sigmoid"},
    "schemes": ["nielsen-default", "nielsen-large"],
    "seeds": [0, 1],
    "epochs": 2,
    "batch_size": 10,
    "learning_rate": 0.1,
    "l2_lambda": 5.0,
}
CHILD_PARAMS = {"scheme", "kernel_initializer", "bias_initializer", "sizes", "activation", "output", "parameters",
                "seed", "dataset", "epochs", "batch_size", "optimizer", "learning_rate", "optimizer_config",
                "l2_lambda", "device"}
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_loss")
INIT_METRICS = [f"init/layer{depth}/{metric}" for depth in (1, 2)
                for metric in ("preact_std", "predicted_std", "saturated_fraction", "grad_norm")]


def write_spec(tmp_path, **changes):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def runs_of(client, experiment_name):
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def check_comparison(client, experiment_name, epochs=2, histograms=False):
    parents, children = runs_of(client, experiment_name)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["initlab.run_key"] for c in children) == [
        "nielsen-default/seed=0", "nielsen-default/seed=1", "nielsen-large/seed=0", "nielsen-large/seed=1"]
    results = {}
    for child in children:
        assert child.info.status == "FINISHED"
        assert set(child.data.params) == CHILD_PARAMS
        assert child.data.params["sizes"] == "[784, 30, 10]"
        assert child.data.params["kernel_initializer"].startswith(
            "ScaledGaussian {" if child.data.params["scheme"] == "nielsen-default" else "RandomNormal {")
        for key in EPOCH_METRICS:
            history = client.get_metric_history(child.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), key
        accuracy = [m.value for m in sorted(client.get_metric_history(child.info.run_id, "val_accuracy"), key=lambda m: m.step)]
        results.setdefault(child.data.params["scheme"], []).append({"val_accuracy": accuracy})
        # Its own summary, at the step of its last epoch: what the UI's bar charts and runs table compare.
        for key, value in (("final_val_accuracy", accuracy[-1]), ("best_val_accuracy", max(accuracy))):
            (metric,) = client.get_metric_history(child.info.run_id, key)
            assert (metric.value, metric.step) == (pytest.approx(value), epochs), key
        assert "model/model.keras" in [a.path for a in client.list_artifacts(child.info.run_id, "model")]
        for key in INIT_METRICS:  # diagnostics of the untrained model, at step 0
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == [0], key
        init_files = {a.path for a in client.list_artifacts(child.info.run_id, "init")}
        assert init_files == {"init/diagnostics.md"} | ({"init/activations.png"} if histograms else set())
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.png", "summary.csv", "summary.md", "spec.json", "original-spec.yaml"} <= artifacts
    # The summary's numbers are the children's metric histories, summarized.
    expected = {row.scheme: row for row in summarize(results)}
    csv_path = client.download_artifacts(parent.info.run_id, "summary.csv")
    lines = Path(csv_path).read_text().splitlines()
    assert lines[0].split(",")[:5] == ["scheme", "seeds", "epoch_1", "epoch_5", "final"]
    for line in lines[1:]:
        scheme, seeds, epoch_1, _, final = line.split(",")[:5]
        assert int(seeds) == 2
        assert float(epoch_1) == pytest.approx(expected[scheme].epoch_1)
        assert float(final) == pytest.approx(expected[scheme].final)
    # The parent reads well: named after the spec and the time it started, the summary table as its description.
    assert re.fullmatch(r"tiny \d{4}-\d\d-\d\d \d\d:\d\d", parent.info.run_name), parent.info.run_name
    description = parent.data.tags["mlflow.note.content"]
    summary_md = Path(client.download_artifacts(parent.info.run_id, "summary.md")).read_text()
    assert summary_md.strip() in description and "validation accuracy" in description
    assert not parent.data.metrics  # per-scheme numbers are the children's (and the tables')
    return parent, children


def test_compare_into_a_sqlite_store(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    spec_file = write_spec(tmp_path)
    assert main(["compare", str(spec_file), "--tracking-uri", uri, "--histograms"]) == 0
    out = capsys.readouterr().out
    assert f"mlflow ui --backend-store-uri {uri}" in out
    _, children = check_comparison(MlflowClient(uri), "tiny", histograms=True)

    # The step-0 metrics are `diagnose` of the very model the run started from.
    spec = ComparisonSpec.from_file(spec_file)
    data = load_spec_data(spec)
    builder = ModelBuilder(spec, data)
    for child in children:
        scheme = next(s for s in spec.schemes if s.name == child.data.params["scheme"])
        table = diagnose(builder.build(scheme, int(child.data.params["seed"])), *diagnostic_batch(data))
        for key, value in table.metrics().items():
            assert child.data.metrics[key] == pytest.approx(value, rel=1e-6), key
    saturated = {c.data.params["scheme"]: c.data.metrics["init/layer1/saturated_fraction"] for c in children}
    assert saturated["nielsen-large"] > 0.3 > 0.01 > saturated["nielsen-default"]


def test_every_seed_in_one_stacked_call_gives_the_curves_of_runs_trained_one_by_one(tmp_path):
    # 3 schemes x 2 seeds stacked in one train_stacked call (compiled once for the architecture, the two
    # groups of 3 share one trace) against the same runs trained one at a time by `train`.
    spec = {**TINY, "schemes": ["nielsen-default", "nielsen-large", "he"], "learning_rate": 0.0917}
    curves = {}
    for stack in (True, False):
        uri = f"sqlite:///{tmp_path / f'stack-{stack}.db'}"
        run_comparison(spec, tracking_uri=uri, stack=stack)
        client = MlflowClient(uri)
        _, children = runs_of(client, "tiny")
        curves[stack] = {c.data.tags["initlab.run_key"]: [m.value for m in sorted(
            client.get_metric_history(c.info.run_id, "val_loss"), key=lambda m: m.step)] for c in children}
    assert len(curves[True]) == 6 and curves[True].keys() == curves[False].keys()
    for key, values in curves[False].items():
        assert curves[True][key] == pytest.approx(values, rel=1e-5), key
    (compiled,) = [c for key, c in stacked._COMPILED.items() if key[-1] == 0.0917]
    assert compiled.train.experimental_get_tracing_count() == 1


def test_default_store_is_tracking_sqlite_in_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = write_spec(tmp_path, schemes=["he"], seeds=[0], epochs=3)
    assert main(["compare", str(spec), "--experiment", "renamed", "--epochs", "1"]) == 0
    db = tmp_path / "tracking" / "mlflow.db"
    assert db.is_file()
    client = MlflowClient(f"sqlite:///{db}")
    parents, children = runs_of(client, "renamed")
    assert len(parents) == 1 and len(children) == 1
    # What ran (the override applied) is spec.json; the file as written is kept beside it.
    ran = json.loads(Path(client.download_artifacts(parents[0].info.run_id, "spec.json")).read_text())
    written = yaml.safe_load(Path(client.download_artifacts(parents[0].info.run_id, "original-spec.yaml")).read_text())
    assert (ran["epochs"], written["epochs"]) == (1, 3)
    assert len(client.get_metric_history(children[0].info.run_id, "val_accuracy")) == 1
    assert f"mlflow ui --backend-store-uri sqlite:///{db}" in capsys.readouterr().out


def test_compare_against_a_real_mlflow_server(tmp_path, monkeypatch, mlflow_server):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(write_spec(tmp_path))]) == 0
    check_comparison(MlflowClient(mlflow_server), "tiny")
    assert not (tmp_path / "tracking").exists()  # nothing went to the local default store


def test_unreachable_server_is_reported_before_training(tmp_path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.time()
    assert main(["compare", str(write_spec(tmp_path)), "--tracking-uri", uri]) == 2
    assert f"MLflow tracking server {uri} is unreachable" in capsys.readouterr().err
    assert time.time() - start < 30


def test_failed_child_is_marked_and_the_others_finish(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    exploding = {"name": "huge", "kernel": {"class_name": "RandomNormal", "config": {"stddev": 1e30}}, "bias": "zeros"}
    spec = write_spec(tmp_path, model={"sizes": [784, 30, 10], "activation": "relu", "output": "softmax"},
                      schemes=["he", exploding], seeds=[0], epochs=2, learning_rate=0.01)
    assert main(["compare", str(spec), "--tracking-uri", uri]) == 1
    assert "huge/seed=0: NonFiniteLossError" in capsys.readouterr().err
    parents, children = runs_of(MlflowClient(uri), "tiny")
    status = {c.data.tags["initlab.run_key"]: c for c in children}
    assert status["he/seed=0"].info.status == "FINISHED"
    assert status["huge/seed=0"].info.status == "FAILED"
    assert "epoch 1" in status["huge/seed=0"].data.tags["initlab.failure"]
    assert parents[0].info.status == "FAILED"
    assert "he" in parents[0].data.tags["mlflow.note.content"]  # the summary of the runs that finished
    assert "final_val_accuracy" in status["he/seed=0"].data.metrics
    assert "final_val_accuracy" not in status["huge/seed=0"].data.metrics


def test_resume_after_sigint_trains_only_the_unfinished_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    spec = write_spec(tmp_path, epochs=60, subset={"train": 2000, "val": 200})
    command = [sys.executable, "-m", "keras_initlab", "compare", str(spec), "--tracking-uri", uri, "--no-stack"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = MlflowClient(uri)
    progress = []
    for line in first.stdout:  # interrupt while the second run trains (one progress line per epoch)
        progress.append(line)
        if line.startswith("[1/4 runs done]") and "epoch 2/60" in line:
            break
    assert progress and "epoch 2/60" in progress[-1], "".join(progress)
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=120) != 0
    parents, children = runs_of(client, "tiny")
    assert parents[0].info.status == "KILLED"
    done_before = {c.data.tags["initlab.run_key"]: c.info.run_id for c in children if c.info.status == "FINISHED"}
    assert 1 <= len(done_before) < 4
    assert any(c.info.status == "KILLED" for c in children)

    second = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resumed: {len(done_before)} finished run(s) kept" in second.stdout
    parent, children = check_comparison(client, "tiny", epochs=60)
    assert parent.info.run_id == parents[0].info.run_id
    for child in children:  # the runs finished before the interrupt were kept, not re-run
        key = child.data.tags["initlab.run_key"]
        if key in done_before:
            assert child.info.run_id == done_before[key]


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


def test_bad_spec_through_the_command_exits_2_before_training(tmp_path, capsys):
    assert main(["compare", str(write_spec(tmp_path, schemes=["sparce10"]))]) == 2
    assert "initlab compare: schemes[0]: unknown scheme 'sparce10'" in capsys.readouterr().err


def test_spec_files_json_and_missing(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(TINY))
    spec = ComparisonSpec.from_file(path)
    assert spec.hash == ComparisonSpec.from_file(write_spec(tmp_path)).hash
    assert spec.replace(epochs=3).hash != spec.hash
    with pytest.raises(SpecError, match="no such spec file"):
        ComparisonSpec.from_file(tmp_path / "missing.yaml")


def test_list_command(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "nielsen-default" in out and "SparseGaussian" in out


def test_quick_gil_handoff_is_scoped_to_the_block():
    microseconds = 2e-6  # Python keeps the interval in whole microseconds, rounded down
    previous = sys.getswitchinterval()
    with quick_gil_handoff():
        assert sys.getswitchinterval() == pytest.approx(BACKGROUND_SWITCH_INTERVAL, abs=microseconds)
    assert sys.getswitchinterval() == previous
    with pytest.raises(RuntimeError), quick_gil_handoff():
        raise RuntimeError("a failing comparison")
    assert sys.getswitchinterval() == previous
    try:  # a user's smaller interval is kept
        sys.setswitchinterval(BACKGROUND_SWITCH_INTERVAL / 10)
        with quick_gil_handoff():
            assert sys.getswitchinterval() == pytest.approx(BACKGROUND_SWITCH_INTERVAL / 10, abs=microseconds)
    finally:
        sys.setswitchinterval(previous)
