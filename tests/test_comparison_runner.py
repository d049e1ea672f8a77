"""`initlab compare` end to end against real MLflow stores: SQLite, a real server, resume after SIGINT."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import (
    FACTORY_SPEC,
    RANDOM_NORMAL,
    REPO,
    check_comparison,
    one_error_line,
    runs_of,
    saved_model,
    write_factory_spec,
    write_spec,
)
from initlab.cli import main
from initlab.comparison import ModelBuilder, diagnostic_batch, load_spec_data, run_comparison
from initlab.spec import ComparisonSpec
from initlab.spec_files import spec_path
from keras_initlab import build_mlp, load_dataset, train_stacked
from keras_initlab.diagnostics import diagnose
from keras_initlab.models import load_factory


def test_the_built_in_nielsen_comparison_tracks_exactly_what_the_library_trains(store):
    """The application adds nothing to the numbers: ``initlab compare nielsen`` (2 epochs here) logs, bit for bit, the
    curves that `keras_initlab.train_stacked` gives the same models, seeds and data."""
    spec = ComparisonSpec.from_file(spec_path("nielsen")).replace(epochs=2)
    uri = store()
    outcome = run_comparison(spec, tracking_uri=uri)
    client = MlflowClient(uri)
    _, children = runs_of(client, "nielsen")
    tracked = {
        c.data.tags["initlab.run_key"]: [
            m.value for m in sorted(client.get_metric_history(c.info.run_id, "val_accuracy"), key=lambda m: m.step)
        ]
        for c in children
    }
    data = load_dataset(spec.dataset)
    runs = spec.runs()
    models = [
        build_mlp(
            spec.model.sizes,
            spec.model.activation,
            spec.model.output,
            run.scheme.name,
            l2_lambda=spec.l2_lambda,
            n_train=data.n_train,
            seed=run.seed,
        )
        for run in runs
    ]
    histories = train_stacked(
        models,
        data,
        epochs=2,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        seed=[run.seed for run in runs],
    )
    assert not outcome.failures and len(tracked) == 6
    assert tracked == {run.key: history.history["val_accuracy"] for run, history in zip(runs, histories, strict=True)}


def test_compare_into_a_sqlite_store(tmp_path, capsys, store):
    uri = store()
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


@pytest.mark.integration
def test_resume_after_sigint_trains_only_the_unfinished_runs(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    spec = write_spec(tmp_path, epochs=60, subset={"train": 2000, "val": 200})
    command = [sys.executable, "-m", "initlab", "compare", str(spec), "--tracking-uri", uri, "--no-stack"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = MlflowClient(uri)
    progress = []
    for line in first.stdout:  # interrupt once a run is done, while later ones train (one progress line per epoch)
        progress.append(line)
        if re.match(r"\[[12]/4 runs done\]", line) and "epoch 2/60" in line:
            break
    assert progress and "epoch 2/60" in progress[-1], "".join(progress)
    first.send_signal(signal.SIGINT)
    rest = first.communicate(timeout=120)[0]
    assert first.returncode == 130, rest  # one line, as a shell reports Ctrl-C
    assert one_error_line(rest).startswith("initlab compare: interrupted (Ctrl-C); the runs in flight are KILLED")
    parents, children = runs_of(client, "tiny")
    assert parents[0].info.status == "KILLED"
    done_before = {c.data.tags["initlab.run_key"]: c.info.run_id for c in children if c.info.status == "FINISHED"}
    assert 1 <= len(done_before) < 4
    assert any(c.info.status == "KILLED" for c in children)

    assert main(command[3:] + ["--resume"]) == 0  # here: this process has TensorFlow loaded already
    assert f"resumed: {len(done_before)} finished run(s) kept" in capsys.readouterr().out
    parent, children = check_comparison(client, "tiny", epochs=60)
    assert parent.info.run_id == parents[0].info.run_id
    for child in children:  # the runs finished before the interrupt were kept, not re-run
        key = child.data.tags["initlab.run_key"]
        if key in done_before:
            assert child.info.run_id == done_before[key]


@pytest.mark.integration
def test_kill_9_then_resume_keeps_every_finished_run_once_with_its_own_times(tmp_path, capsys):
    """Killed (SIGKILL, nothing handled) as it reports its second (or second and third) run done, on a store it was
    still making: every run that had ended is a record on disk, and ``--resume`` writes each once, with the times it
    trained at."""
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    spec = write_spec(tmp_path, epochs=2, subset={"train": 400, "val": 200})
    command = [sys.executable, "-m", "initlab", "compare", str(spec), "--tracking-uri", uri, "--no-stack"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    progress, second_done = [], re.compile(r"\[[23]/4 runs done\]")  # two lanes may end runs together: 1, then 3
    for line in first.stdout:
        progress.append(line)
        if second_done.match(line):
            break
    first.kill()
    first.wait()
    assert second_done.match(progress[-1]), "".join(progress)
    orphan = first.stdout.read()  # until the tracking process, which shares the pipe, ends too: quietly
    assert "Traceback" not in orphan, orphan
    ended = {}  # run key -> (start, end) of every run that finished, on disk or in MLflow
    for record in (tmp_path / "pending").glob("*/*/*/run.json"):
        saved = json.loads(record.read_text())
        ended[saved["run_key"]] = (saved["start_time"], saved["end_time"])
    if (tmp_path / "new.db").exists() and MlflowClient(uri).get_experiment_by_name("tiny"):
        for child in runs_of(MlflowClient(uri), "tiny")[1]:
            if child.info.status == "FINISHED":
                ended[child.data.tags["initlab.run_key"]] = (child.info.start_time, child.info.end_time)
    assert len(ended) >= 2, (ended, "".join(progress))

    assert main(command[3:] + ["--resume"]) == 0
    assert f"resumed: {len(ended)} finished run(s) kept" in capsys.readouterr().out
    _, children = check_comparison(MlflowClient(uri), "tiny", epochs=2)  # each (scheme, seed) once, whole
    times = {c.data.tags["initlab.run_key"]: (c.info.start_time, c.info.end_time) for c in children}
    assert {key: times[key] for key in ended} == ended  # kept as they were, not trained again
    assert not list((tmp_path / "pending").glob("*/*/*/run.json"))  # every record written, then removed


@pytest.mark.parametrize(
    "signum, status, said",
    [(signal.SIGINT, 130, "interrupted (Ctrl-C)"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_ctrl_c_and_sigterm_end_in_one_line_with_the_finished_runs_kept(
    tmp_path, capsys, monkeypatch, store, signum, status, said
):
    from initlab.comparison.progress import RelayedProgress

    uri = store()
    spec = write_spec(tmp_path, epochs=12)
    on_epoch_end = RelayedProgress.on_epoch_end
    sent = []

    def signalled(self, epoch, logs=None):
        # Sent from the lane training the third run, after its first epoch: a lane starts a third run only once an
        # earlier one is done, and this one is in flight (11 epochs to go) when the signal is handled. (Sent as the
        # comparison's thread saw a run done, it could come while every lane was between runs.)
        if self.index >= 2 and not sent:
            sent.append(epoch)
            os.kill(os.getpid(), signum)
        on_epoch_end(self, epoch, logs)

    monkeypatch.setattr(RelayedProgress, "on_epoch_end", signalled)
    before = signal.getsignal(signum)
    assert main(["compare", str(spec), "--tracking-uri", uri, "--no-stack"]) == status
    line = one_error_line(capsys.readouterr().err)
    assert (
        line == f"initlab compare: {said}; the runs in flight are KILLED, the finished ones kept: "
        "rerun with --resume to finish"
    )
    (parent,), children = runs_of(MlflowClient(uri), "tiny")
    assert parent.info.status == "KILLED"
    # The runs that ended are kept, the one or two in flight (a lane each) end KILLED, those not started do not exist.
    statuses = sorted(c.info.status for c in children)
    assert set(statuses) == {"FINISHED", "KILLED"} and statuses.count("KILLED") <= 2, statuses
    assert signal.getsignal(signum) == before  # as it was before the comparison


def test_a_resume_is_refused_while_the_comparison_runs_and_one_with_nothing_to_reopen_is_said(tmp_path, capsys, store):
    from initlab.tracking import ChildRun, Records

    uri = store()
    spec = write_spec(tmp_path, seeds=[0], epochs=1)
    spec_hash = ComparisonSpec.from_file(spec).hash
    with Records(uri, "tiny", spec_hash).running(resume=False, what="another"):  # as another process running it
        assert main(["compare", str(spec), "--tracking-uri", uri, "--resume"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "is running in another process on this machine" in line and "then rerun with --resume" in line
    assert MlflowClient(uri).get_experiment_by_name("tiny") is None  # nothing started
    # A run that ended in an attempt killed before its parent existed (or whose store was deleted): --resume finds
    # no parent to re-open, says so, and keeps the run.
    run = ChildRun("nielsen-default/seed=0", {"scheme": "nielsen-default", "seed": 0})
    run.add_epoch(1, {"val_accuracy": 0.5})
    run.finish(None)
    Records(uri, "tiny", spec_hash).stage(run)
    assert main(["compare", str(spec), "--tracking-uri", uri, "--resume"]) == 0
    captured = capsys.readouterr()
    assert "--resume: no comparison of tiny in " in captured.err and "with the 1 run record(s) left" in captured.err
    assert "resumed: 1 finished run(s) kept: nielsen-default/seed=0" in captured.out
    _, children = runs_of(MlflowClient(uri), "tiny")
    assert sorted(c.data.tags["initlab.run_key"] for c in children) == [
        "nielsen-default/seed=0",
        "nielsen-large/seed=0",
    ]


@pytest.mark.parametrize("stack", [True, False])
def test_an_explicit_scheme_trains_alone(tmp_path, stack, store):
    uri = store()
    spec = write_spec(tmp_path, schemes=[RANDOM_NORMAL], seeds=[0], epochs=1)
    assert main(["compare", str(spec), "--tracking-uri", uri] + ([] if stack else ["--no-stack"])) == 0
    _, children = runs_of(MlflowClient(uri), "tiny")
    assert [c.info.status for c in children] == ["FINISHED"]
    assert len(MlflowClient(uri).get_metric_history(children[0].info.run_id, "val_accuracy")) == 1


def test_a_notebook_function_trains_and_resumes_by_its_name(factories, store):
    build = load_factory("models/factories.py:build", factories)
    spec = {**FACTORY_SPEC, "model": {"factory": build}, "schemes": ["he"], "epochs": 1}
    uri = store()
    first = run_comparison(spec, tracking_uri=uri)
    (child,) = MlflowClient(uri).search_runs([first.experiment_id], "tags.`mlflow.parentRunId` != ''")
    assert child.data.params["factory"] == f"{build.__module__}:build"
    again = run_comparison(spec, tracking_uri=uri, resume=True)
    assert again.parent_run_id == first.parent_run_id and again.skipped == ["he/seed=0"]


def test_the_convnet_kind_compares_and_diagnoses(tmp_path, capsys, store):
    uri = store()
    spec = write_factory_spec(tmp_path, model={"kind": "convnet", "filters": [4, 8]}, schemes=["he", "lecun"], epochs=1)
    assert main(["compare", str(spec), "--tracking-uri", uri]) == 0
    client = MlflowClient(uri)
    children = client.search_runs(
        [client.get_experiment_by_name("factory").experiment_id], "tags.`mlflow.parentRunId` != ''"
    )
    assert {c.data.params["kind"] for c in children} == {"convnet"}
    for child in children:
        assert json.loads(child.data.params["filters"]) == [4, 8]
        assert [layer.name for layer in saved_model(client, child).layers if hasattr(layer, "kernel")] == [
            "conv_1",
            "conv_2",
            "dense_out",
        ]
        for depth in (1, 2, 3):  # the step-0 diagnostics of both conv layers and the output layer
            assert child.data.metrics[f"init/layer{depth}/grad_norm"] > 0
    assert main(["diagnose", str(spec), "--out", str(tmp_path / "figures")]) == 0
    assert "| conv_2 |" in capsys.readouterr().out


def test_a_factory_comparison_fails_alone_and_resumes(factories, capsys, store):
    uri = store()
    exploding = {"name": "huge", "kernel": {"class_name": "RandomNormal", "config": {"stddev": 1e30}}, "bias": "zeros"}
    spec = write_factory_spec(factories, schemes=["he", exploding], optimizer="sgd")
    assert main(["compare", str(spec), "--tracking-uri", uri]) == 1
    assert "huge/seed=0: NonFiniteLossError" in capsys.readouterr().err
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("factory").experiment_id
    children = {
        c.data.tags["initlab.run_key"]: c for c in client.search_runs([experiment], "tags.`mlflow.parentRunId` != ''")
    }
    assert children["he/seed=0"].info.status == "FINISHED" and children["huge/seed=0"].info.status == "FAILED"
    assert children["he/seed=0"].data.params["factory"] == "models/factories.py:build"

    assert main(["compare", str(spec), "--tracking-uri", uri, "--resume"]) == 1  # huge fails again; he is kept
    assert "resumed: 1 finished run(s) kept: he/seed=0" in capsys.readouterr().out
    again = {
        c.data.tags["initlab.run_key"]: c for c in client.search_runs([experiment], "tags.`mlflow.parentRunId` != ''")
    }
    assert again["he/seed=0"].info.run_id == children["he/seed=0"].info.run_id
    assert again["huge/seed=0"].info.run_id != children["huge/seed=0"].info.run_id
    assert len(client.search_runs([experiment], "tags.`initlab.role` = 'comparison'")) == 1


def test_your_data_through_an_npz_spec_and_through_data_give_the_same_curves_and_resume_checks_them(tmp_path, store):
    from sklearn.datasets import load_digits

    from initlab.spec_files import SpecError
    from keras_initlab import Dataset

    bunch = load_digits()  # real 8x8 digits, not MNIST
    x, y = (bunch.images / 16).astype("float32"), bunch.target
    np.savez(tmp_path / "digits.npz", x_train=x[:1400], y_train=y[:1400], x_test=x[1400:], y_test=y[1400:])
    spec = {
        "name": "digits",
        "model": {"sizes": [64, 16, 10]},
        "schemes": ["he", "glorot"],
        "seeds": [0],
        "epochs": 2,
        "batch_size": 20,
        "learning_rate": 0.5,
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**spec, "dataset": {"npz": "digits.npz"}}))
    uri = store()
    from_file = run_comparison(tmp_path / "spec.yaml", tracking_uri=uri, experiment="npz")
    arrays = Dataset.from_arrays(x[:1400], y[:1400], x[1400:], y[1400:], name="digits")
    from_arrays = run_comparison(spec, tracking_uri=uri, experiment="arrays", data=arrays)
    client = MlflowClient(uri)
    curves = {}
    for outcome in (from_file, from_arrays):
        for child in client.search_runs([outcome.experiment_id], "tags.`mlflow.parentRunId` != ''"):
            assert (child.data.params["dataset"], child.data.params["dataset_hash"]) == ("digits", arrays.checksum)
            assert child.data.params["dataset_shapes"] == "train (1400, 8, 8, 1), val (397, 8, 8, 1)"
            history = client.get_metric_history(child.info.run_id, "val_accuracy")
            curves.setdefault(child.data.params["scheme"], []).append(
                [m.value for m in sorted(history, key=lambda m: m.step)]
            )
    assert all(len(pair) == 2 and pair[0] == pair[1] and len(pair[0]) == 2 for pair in curves.values())
    assert curves["he"][0][-1] > 0.5  # it learned the digits
    other = y[1400:].copy()
    other[0] = (other[0] + 1) % 10
    with pytest.raises(
        SpecError,
        match=rf"--resume: the data differ from those the comparison trained on \(dataset_hash: "
        rf"{arrays.checksum} there, md5:\w+ now\)",
    ):
        run_comparison(
            spec,
            tracking_uri=uri,
            experiment="arrays",
            resume=True,
            data=Dataset.from_arrays(x[:1400], y[:1400], x[1400:], other, name="digits"),
        )
    assert run_comparison(spec, tracking_uri=uri, experiment="arrays", resume=True, data=arrays).skipped == [
        "glorot/seed=0",
        "he/seed=0",
    ]


def test_vectors_train_in_the_mlp_and_data_is_checked_before_any_run(tmp_path, store):
    from sklearn.datasets import load_wine

    from initlab.spec_files import SpecError
    from keras_initlab import Dataset

    wine = load_wine()  # 178 real 13-feature vectors of 3 classes
    x = ((wine.data - wine.data.mean(0)) / wine.data.std(0)).astype("float32")
    data = Dataset.from_arrays(x[::2], wine.target[::2], x[1::2], wine.target[1::2], name="wine")
    spec = {
        "name": "wine",
        "model": {"sizes": [13, 8, 3]},
        "schemes": ["he"],
        "seeds": [0, 1],
        "epochs": 3,
        "batch_size": 10,
        "learning_rate": 0.3,
    }
    uri = store()
    outcome = run_comparison(spec, tracking_uri=uri, data=data)
    assert outcome.failures == {} and outcome.summary[0].final > 0.6
    for changes, error, message in [
        (
            {"model": {"sizes": [784, 8, 3]}},
            SpecError,
            r"model.sizes\[0\]: 784 inputs, but the examples of wine have 13 = 13 values; use 13",
        ),
        ({"model": {"sizes": [13, 8, 10]}}, SpecError, r"model.sizes\[-1\]: 10 outputs, but wine has 3 classes; use 3"),
        (
            {"model": {"kind": "convnet"}},
            SpecError,
            r"model: the convnet takes images \(H, W, C\), but the examples of wine have shape \(13,\)",
        ),
        ({"dataset": "mnist-10k"}, ValueError, r"give the data once: the spec's dataset key or data=, not both"),
    ]:
        with pytest.raises(error, match=message):
            run_comparison({**spec, **changes}, tracking_uri=uri, data=data)
    with pytest.raises(TypeError, match=r"data must be a keras_initlab.Dataset .*; got \(array"):
        run_comparison(spec, tracking_uri=uri, data=(x, wine.target))
    assert len(MlflowClient(uri).search_runs([outcome.experiment_id])) == 3  # the parent and its 2 runs, no more
