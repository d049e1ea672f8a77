"""Hostile and unlucky cases: every bad spec refused before a run exists, no hang, no lost run, a login."""

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient

from conftest import REPO, Server, free_port
from keras_initlab.cli import main
from keras_initlab.schemes import list_schemes
from keras_initlab.spec import ComparisonSpec, SpecError
from test_compare import check_comparison, runs_of, write_spec

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
COMMAND = [sys.executable, "-m", "keras_initlab", "compare"]
RANDOM_NORMAL = {"name": "rn", "kernel": {"class_name": "RandomNormal", "config": {"stddev": 0.1}}, "bias": "zeros"}


def one_error_line(stderr: str, command: str = "compare") -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(f"initlab {command}:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("stack", [True, False])
def test_an_explicit_scheme_trains_alone(tmp_path, stack):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    spec = write_spec(tmp_path, schemes=[RANDOM_NORMAL], seeds=[0], epochs=1)
    assert main(["compare", str(spec), "--tracking-uri", uri] + ([] if stack else ["--no-stack"])) == 0
    _, children = runs_of(MlflowClient(uri), "tiny")
    assert [c.info.status for c in children] == ["FINISHED"]
    assert len(MlflowClient(uri).get_metric_history(children[0].info.run_id, "val_accuracy")) == 1


# -- bounded specs ------------------------------------------------------------------------

BOMB = """name: bomb
schemes: [he]
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


@pytest.mark.parametrize(
    "content, message",
    [
        (BOMB, r"not valid YAML: aliases \(\*a\) are not allowed in a spec"),
        ("name: x\nschemes: [he]\nseeds: [" + ", ".join(map(str, range(300_000))) + "]\n", r"bytes; a spec is at most 1048576"),
        (b"name: caf\xe9\nschemes: [he]\n", r"not UTF-8 text \(byte 9 is 0xe9\)"),
        ("name: x\nschemes: [he]\nepochs: 1000000000000\n", r"^epochs: must be an int between 1 and 100000; got 1000000000000$"),
        ("name: x\nschemes: [he]\nseeds: [" + ", ".join(map(str, range(2000))) + "]\n", r"^seeds: must be a list of 1 to 1000"),
        ("name: x\nschemes: [he]\n1: 2\n", r"^spec: must be a mapping of spec keys with str keys"),
        ("[" * 200_000, r"nested too deeply to be a spec"),
        (json.dumps({"name": "x", "seeds": list(range(1000)), "schemes": list(list_schemes()) + [
            {**RANDOM_NORMAL, "name": f"rn{i}"} for i in range(4)]}),
         rf"^seeds: 1000 seeds x {len(list_schemes()) + 4} schemes = {1000 * (len(list_schemes()) + 4)} runs"),
        (f"name: {'n' * 101}\nschemes: [he]\n", r"^name: must be a name of at most 100 letters"),
        ("name: x\nschemes: [he]\ndataset: " + "d" * 500_000 + "\nbogus: 1\n", r"^bogus: unknown key"),
    ],
)
def test_specs_are_bounded(tmp_path, content, message):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.perf_counter()
    with pytest.raises(SpecError, match=message) as info:
        ComparisonSpec.from_file(path)
    assert time.perf_counter() - started < 10  # refused, not parsed or expanded for minutes
    assert len(str(info.value)) < 600 and "\n" not in str(info.value)  # one line; a huge value is not echoed


def test_diagnose_refuses_a_name_too_long_for_a_file(tmp_path, capsys):
    scheme = {**RANDOM_NORMAL, "name": "s" * 300}  # activations-<name>.png would exceed 255 bytes
    assert main(["diagnose", str(write_spec(tmp_path, schemes=[scheme])), "--out", str(tmp_path / "out")]) == 2
    assert "schemes[0].name: must be a name of at most 100" in one_error_line(capsys.readouterr().err, "diagnose")
    assert not (tmp_path / "out").exists()


def test_diagnose_reports_an_output_folder_it_cannot_write(tmp_path, capsys):
    assert main(["diagnose", str(write_spec(tmp_path)), "--out", "/proc/no-such-folder/out"]) == 2
    assert "cannot write the figures to /proc/no-such-folder/out" in one_error_line(capsys.readouterr().err, "diagnose")


def test_a_long_value_is_not_echoed(tmp_path, capsys):
    path = write_spec(tmp_path, dataset=["x" * 500_000])
    assert main(["compare", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("initlab compare: dataset: must be a dataset name; got ['xxx") and len(line) < 300


# -- checked before any run exists --------------------------------------------------------

SPARSE = {"name": "sp", "kernel": {"class_name": "keras_initlab>SparseGaussian", "config": {"connections": 50}},
          "bias": "zeros"}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"batch_size": 401}, r"batch_size: 401 is larger than the 400 training examples"),
        ({"model": {"sizes": [100, 30, 10]}}, r"model.sizes\[0\]: 100 inputs, but the images of .* have 28x28x1 = 784"),
        ({"model": {"sizes": [784, 30, 5]}}, r"model.sizes\[-1\]: 5 outputs, but .* has 10 classes; use 10"),
        ({"model": {"sizes": [784, 1000000, 1000000, 10]}}, r"model.sizes: one model needs about \d+ MiB"),
        ({"schemes": [SPARSE]}, r"schemes\[0\] \(sp\): SparseGaussian\(connections=50\) needs fan_in >= 50"),
        ({"subset": {"train": 9000, "val": 10}}, r"subset.train: 9000 examples asked for, but mnist-10k has 8000"),
        ({"dataset": "no_such_dataset_xyz"}, r"dataset: 'no_such_dataset_xyz' cannot be loaded: Unknown dataset name"),
    ] + ([] if tf.config.list_physical_devices("GPU") else [  # a missing GPU, on a machine without one
        ({"device": "gpu"}, r"device: device='gpu' was asked for, but TensorFlow sees no GPU"),
    ]),
)
def test_what_the_spec_data_and_memory_show_is_refused_before_any_run(tmp_path, capsys, changes, message):
    store = tmp_path / "store.db"
    assert main(["compare", str(write_spec(tmp_path, **changes)), "--tracking-uri", f"sqlite:///{store}"]) == 2
    assert re.search(message, one_error_line(capsys.readouterr().err))
    assert not store.exists()  # no store, no experiment, no run


# -- the tracking store -------------------------------------------------------------------


def test_store_problems_are_one_line_errors(tmp_path, capsys, monkeypatch):
    spec = str(write_spec(tmp_path, epochs=1))
    assert main(["compare", spec, "--tracking-uri", "sqlite:///"]) == 2
    assert "the MLflow store sqlite:/// names no database file" in one_error_line(capsys.readouterr().err)
    assert main(["compare", spec, "--tracking-uri", "foo://x"]) == 2
    assert "cannot use the MLflow store foo://x" in one_error_line(capsys.readouterr().err)
    assert main(["compare", spec, "--tracking-uri", "sqlite:////proc/no-such-folder/mlflow.db"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "cannot use the MLflow store sqlite:////proc/no-such-folder/mlflow.db" in line and "writable folder" in line
    (tmp_path / "notes.db").write_text("a text file, not a store")
    assert main(["compare", spec, "--tracking-uri", f"sqlite:///{tmp_path / 'notes.db'}"]) == 2
    assert f"{tmp_path / 'notes.db'} is not a SQLite database" in one_error_line(capsys.readouterr().err)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tracking").write_text("not a folder")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["compare", spec]) == 2
    assert f"{tmp_path / 'tracking'} is a file, not a folder" in one_error_line(capsys.readouterr().err)


def test_two_comparisons_start_on_a_new_store_at_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    spec = write_spec(tmp_path, seeds=[0], epochs=1)
    processes = [subprocess.Popen(COMMAND + [str(spec), "--tracking-uri", uri], env=ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    parents, children = runs_of(MlflowClient(uri), "tiny")
    assert len(parents) == 2 and len(children) == 4 and all(c.info.status == "FINISHED" for c in children)


def test_a_store_that_cannot_be_written_fails_in_one_line_and_resume_finishes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    spec = write_spec(tmp_path, seeds=[0], epochs=1)
    assert main(["compare", str(spec), "--tracking-uri", uri]) == 0  # the store exists
    spec = write_spec(tmp_path, seeds=[0], epochs=2)

    def no_file_may_grow():  # like a full disk: no file grows past 256 KiB (EFBIG instead of ENOSPC); the store is larger
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, resource.RLIM_INFINITY))

    full = subprocess.run(COMMAND + [str(spec), "--tracking-uri", uri], env=ENV, capture_output=True, text=True,
                          timeout=300, preexec_fn=no_file_may_grow)
    assert full.returncode == 1, full.stdout + full.stderr
    assert "stopped working" in one_error_line(full.stderr) and "rerun with --resume" in full.stderr
    resumed = subprocess.run(COMMAND + [str(spec), "--tracking-uri", uri, "--resume"], env=ENV, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # What the full store could not mark is repaired: nothing RUNNING, each run of the new spec once.
    parents, children = runs_of(MlflowClient(uri), "tiny")
    assert not [c for c in children if c.info.status == "RUNNING"]
    finished = [c for c in children if c.info.status == "FINISHED" and c.data.params["epochs"] == "2"]
    assert sorted(c.data.tags["initlab.run_key"] for c in finished) == ["nielsen-default/seed=0", "nielsen-large/seed=0"]


def test_a_server_that_dies_mid_comparison_is_reported_quickly_and_resume_keeps_every_run(tmp_path):
    server = Server(tmp_path, free_port()).start()
    try:
        spec = write_spec(tmp_path, epochs=60, subset={"train": 1000, "val": 200})
        env = {**ENV, "MLFLOW_TRACKING_URI": server.uri, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        first = subprocess.Popen(COMMAND + [str(spec), "--no-stack"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        client = MlflowClient(server.uri)
        progress = []
        for line in first.stderr:  # kill the server while the second run trains (one progress line per epoch)
            progress.append(line)
            if line.startswith("[1/4 runs done]") and "epoch 5/60" in line:
                break
        assert progress and "epoch 5/60" in progress[-1], "".join(progress)
        # Runs are written by a thread of their own while the next one trains: kill once the first is in MLflow.
        deadline = time.time() + 120
        experiment = client.get_experiment_by_name("tiny").experiment_id
        while not [r for r in client.search_runs([experiment], "tags.`initlab.run_key` != ''") if r.info.status == "FINISHED"]:
            assert time.time() < deadline, "the first run never reached MLflow"
            time.sleep(0.2)
        server.stop(signal.SIGKILL)
        killed = time.time()
        _, rest = first.communicate(timeout=300)
        stderr = "".join(progress) + rest
        assert first.returncode == 1
        line = one_error_line(stderr)
        assert f"the MLflow store {server.uri} stopped working" in line and "rerun with --resume" in line
        # Training the run in flight goes on without the server (and, while the writer's requests fail, perhaps
        # the next one); every run that finished is a complete record; the report takes seconds, not minutes.
        records = list((tmp_path / "cache" / "keras-initlab" / "pending").glob("*/*/run.json"))
        saved = [json.loads(r.read_text()) for r in records]
        assert [r["status"] for r in saved] == ["FINISHED"] * len(records) and 1 <= len(records) <= 3, saved
        assert "nielsen-default/seed=0" not in [r["run_key"] for r in saved]  # the first run is in MLflow
        assert all((r.parent / "artifacts" / "model" / "model.keras").is_file() for r in records)
        print(f"reported {time.time() - killed:.1f} s after the kill, {len(records)} finished run(s) kept on disk")
        assert time.time() - killed < 120

        server.start()  # the same store, back
        resumed = subprocess.run(COMMAND + [str(spec), "--no-stack", "--resume"], env=env, capture_output=True,
                                 text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        check_comparison(client, "tiny", epochs=60)  # every (scheme, seed) once, FINISHED, with its whole history
        assert not any(r.exists() for r in records)  # the pending records were written to MLflow and removed
    finally:
        server.stop()


# -- a server shared safely ---------------------------------------------------------------


def test_an_authenticated_server(tmp_path, capsys, monkeypatch):
    password = "correct horse battery staple"
    server = Server(tmp_path, free_port(), MLFLOW_AUTH_ADMIN_PASSWORD=password).start()
    try:
        request = urllib.request.Request(server.uri + "/api/2.0/mlflow/experiments/create", method="POST",
                                         data=json.dumps({"name": "intruder"}).encode(),
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401  # no login, no experiment

        spec = str(write_spec(tmp_path, seeds=[0], epochs=1))
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        started = time.perf_counter()
        assert main(["compare", spec, "--tracking-uri", server.uri]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "refused the login of MLFLOW_TRACKING_USERNAME='admin'" in line and time.perf_counter() - started < 30

        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        assert main(["compare", spec, "--tracking-uri", server.uri]) == 0
        parents, children = runs_of(MlflowClient(server.uri), "tiny")
        assert len(parents) == 1 and len(children) == 2  # the refused attempt created nothing
        assert MlflowClient(server.uri).get_experiment_by_name("intruder") is None
    finally:
        server.stop()


def test_serve_refuses_to_listen_beyond_this_machine_without_a_login(tmp_path):
    server = Server(tmp_path, free_port())
    env = {key: value for key, value in server.env.items() if key != "MLFLOW_AUTH_ADMIN_PASSWORD"}
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        started = time.perf_counter()
        done = subprocess.run(server.command + ["--host", host], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and f"--host {host} makes the server reachable from other machines, so it " \
            "needs a login: set MLFLOW_AUTH_ADMIN_PASSWORD" in done.stderr, done.stderr
        assert time.perf_counter() - started < 5  # refused by the launcher: no TensorFlow, no MLflow imported
    done = subprocess.run(server.command + ["--", "--host", "0.0.0.0"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "pass --host to initlab serve, before --, not to mlflow server" in done.stderr
    assert not (tmp_path / "server.db").exists()


def test_serve_command_line_and_login_settings(tmp_path, monkeypatch):
    from keras_initlab.server import auth_settings, parser, server_command

    monkeypatch.chdir(tmp_path)
    options = parser().parse_args([])
    argv, env = server_command(options, {})
    assert argv[1:4] == ["-m", "mlflow", "server"]
    assert argv[4:] == ["--backend-store-uri", f"sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}",  # compare's default
                        "--artifacts-destination", str(tmp_path / "tracking" / "server-artifacts"), "--serve-artifacts",
                        "--host", "127.0.0.1", "--port", "5000", "--workers", "1"]
    assert env == {}  # no login asked for, none set up
    for host in ("localhost", "127.0.0.2", "::1"):
        server_command(parser().parse_args(["--host", host]), {})  # this machine only: no login needed
    argv, _ = server_command(parser().parse_args(["--host", "0.0.0.0", "--insecure", "--", "--dev"]), {})
    assert argv[-1] == "--dev"
    options = parser().parse_args(["--host", "0.0.0.0", "--default-permission", "NO_PERMISSIONS"])
    secret = {"MLFLOW_AUTH_ADMIN_PASSWORD": "pw"}
    (argv, first), (_, second) = server_command(options, secret), server_command(options, secret)
    assert argv[-2:] == ["--app-name", "basic-auth"] and first["MLFLOW_AUTH_CONFIG_PATH"] == options.auth_config
    assert re.fullmatch("[0-9a-f]{64}", first["MLFLOW_FLASK_SERVER_SECRET_KEY"])
    assert first["MLFLOW_FLASK_SERVER_SECRET_KEY"] != second["MLFLOW_FLASK_SERVER_SECRET_KEY"]  # random per start
    _, env = server_command(options, {**secret, "MLFLOW_FLASK_SERVER_SECRET_KEY": "k"})
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "k"  # one set is kept (several servers share it)
    text = auth_settings(options, {"MLFLOW_AUTH_ADMIN_USERNAME": "root", **secret})
    assert text == ("[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                    f"database_uri = sqlite:///{tmp_path / 'tracking' / 'auth.db'}\nadmin_username = root\n")
    assert "pw" not in text  # the password stays in the environment


# -- data ---------------------------------------------------------------------------------


def test_mnist_without_local_files_says_it_goes_to_the_network_first(tmp_path, monkeypatch, caplog):
    import tensorflow_datasets as tfds

    from keras_initlab.data import DatasetNotFoundError, load_dataset

    events = []

    def offline(self, *args, **kwargs):  # TFDS's download, as it ends on a machine without network access
        events.append(("download", [r.getMessage() for r in caplog.records]))
        raise OSError("network is unreachable")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: False)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("KERAS_INITLAB_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match="TensorFlow Datasets .*network is unreachable"):
        load_dataset("mnist", data_dir=tmp_path)
    ((_, said_before),) = events
    assert any("downloads it now; this needs network access" in m for m in said_before), said_before
