"""What the tests share: real MLflow tracking servers started through the project's own ``initlab serve``, new
MLflow stores, a Ray head node, the small specs they run, and how they read a comparison back from MLflow."""

import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from initlab.report import summarize

REPO = Path(__file__).resolve().parents[1]

# MLflow's telemetry thread cannot reach its servers here; when it gives up it deletes an environment
# variable while a request of the main thread is reading the environment (a KeyError inside MLflow).
# The tests run offline, so they run without it (this process and the subprocesses it starts).
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(uri: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Returns once the MLflow server or UI at ``uri`` answers /health; raises with its log if it exits or times out."""
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2)
            return
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"MLflow at {uri} did not start:\n" + log.read_text()[-3000:]) from None
            time.sleep(0.5)


class Server:
    """``initlab serve`` on 127.0.0.1:``port`` with its store in ``folder`` (``env``: more environment, e.g. the
    admin's password); `start` waits for /health."""

    def __init__(self, folder: Path, port: int, **env: str):
        self.folder, self.port, self.uri = folder, port, f"http://127.0.0.1:{port}"
        self.command = [
            str(Path(sys.executable).with_name("initlab")),
            "serve",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "server-artifacts"),
            "--auth-db",
            f"sqlite:///{folder / 'auth.db'}",
            "--auth-config",
            str(folder / "basic_auth.ini"),
        ]
        self.env = {**os.environ, **env}
        self.process = None

    def start(self) -> "Server":
        log = open(self.folder / "server.log", "a")
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until_healthy(self.uri, self.process, self.folder / "server.log")
        except RuntimeError:
            self.stop(signal.SIGKILL)
            raise
        return self

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, its schema migrated (1.5-3 s of MLflow's migrations), made once per test run."""
    from mlflow.tracking import MlflowClient

    database = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


@pytest.fixture
def store(tmp_path, _empty_store):
    """``store(name="store.db")``: the URI of a new, empty MLflow SQLite store in ``tmp_path``, a copy of one made once
    (what MLflow's migrations make of a new file). The tests of making a store (the default store, two comparisons
    on a new store, the tracking process) make theirs the way a comparison does."""

    def new(name: str = "store.db") -> str:
        shutil.copyfile(_empty_store, tmp_path / name)
        return f"sqlite:///{tmp_path / name}"

    return new


# -- Ray ----------------------------------------------------------------------------------

RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
"""Ray without token authentication (Ray 2.60 turns it on for a new cluster and would write ``~/.ray/auth_token``)
and without usage statistics."""

LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
"""127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc/net/tcp and tcp6 write them."""


def listening() -> set[str]:
    """The machine's listening TCP sockets, ``ADDRESS:PORT`` as /proc/net/tcp and tcp6 write them (hexadecimal)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found.add(fields[1])
    return found


def on_loopback(sockets: set[str]) -> bool:
    """Whether every socket of ``sockets`` (as `listening` gives them) is on a loopback address."""
    return {address.split(":")[0] for address in sockets} <= LOOPBACK


def ray_env(monkeypatch) -> None:
    """This process's Ray: no token authentication, no usage statistics (as `RAY_ENV`)."""
    for key in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED"):
        monkeypatch.setenv(key, RAY_ENV[key])


@contextlib.contextmanager
def head_node(env: dict, cpus: int, sigint_ignored: bool = False):
    """``ray start --head`` on 127.0.0.1:PORT with ``env`` and ``cpus`` CPUs, in a session of its own, stopped by
    killing that session's processes (``ray stop --force`` would stop every Ray of this user on the machine); yields
    PORT. ``sigint_ignored``: started as from a shell's background job (``ray start ... &``), whose workers inherit
    that."""
    port = free_port()
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's Unix sockets go there
    launcher = []
    if sigint_ignored:
        launcher = [
            sys.executable,
            "-c",
            "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])",
        ]
    ray = Path(sys.executable).with_name("ray")
    options = ["--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(cpus), "--temp-dir", folder]
    start = subprocess.Popen(
        [*launcher, str(ray), "start", "--head", *options, "--disable-usage-stats", "--include-dashboard=false"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = start.communicate(timeout=180)
        assert start.returncode == 0, output
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(start.pid, signal.SIGTERM)
            time.sleep(1)  # the raylet ends; the GCS server and the autoscaler's monitor go on
            os.killpg(start.pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_head_node():
    """A Ray head node (`head_node`, 2 CPUs, SIGINT ignored) for the tests that need one, one per test run, with
    the loopback setting (`initlab.cluster.LOOPBACK_VARIABLE`). Yields the port and the sockets it opened."""
    before = listening()
    with head_node({**RAY_ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, cpus=2, sigint_ignored=True) as port:
        yield port, listening() - before


# -- data and diagnostics -------------------------------------------------------------------


@pytest.fixture(scope="session")
def mnist_val():
    """The first 1000 validation images of mnist-10k and their labels."""
    from keras_initlab import load_dataset

    data = load_dataset("mnist-10k")
    return data.x_val[:1000], data.y_val[:1000]


@pytest.fixture(scope="session")
def tables(mnist_val):
    """`keras_initlab.diagnose` of Nielsen's network under three schemes, seed 0, on `mnist_val`."""
    from keras_initlab import build_mlp, diagnose

    x, y = mnist_val
    return {
        scheme: diagnose(build_mlp([784, 30, 10], scheme=scheme, seed=0), x, y)
        for scheme in ("nielsen-large", "nielsen-default", "zeros")
    }


# -- specs shared by the tests -------------------------------------------------------------

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
"""A comparison that trains in seconds: Nielsen's network on 400 examples, 2 schemes x 2 seeds x 2 epochs."""


def write_spec(tmp_path, **changes):
    """`TINY` with ``changes``, as ``spec.yaml`` in ``tmp_path``."""
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def runs_of(client, experiment_name):
    """``(parent runs, child runs)`` of an experiment."""
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def one_error_line(stderr: str, command: str = "compare") -> str:
    """The one line ``initlab COMMAND: ...`` of ``stderr``, which holds no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith(f"initlab {command}:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


RANDOM_NORMAL = {"name": "rn", "kernel": {"class_name": "RandomNormal", "config": {"stddev": 0.1}}, "bias": "zeros"}
"""An explicit scheme: a name and Keras initializer configs."""

COMPARE = [sys.executable, "-m", "initlab", "compare"]
"""The ``initlab compare`` command in a process of its own (with `COMMAND_ENV`)."""
COMMAND_ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


CHILD_PARAMS = {
    "scheme",
    "kernel_initializer",
    "bias_initializer",
    "sizes",
    "activation",
    "output",
    "parameters",
    "seed",
    "dataset",
    "dataset_shapes",
    "dataset_hash",
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "optimizer_config",
    "l2_lambda",
    "device",
}
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_loss")
INIT_METRICS = [
    f"init/layer{depth}/{metric}"
    for depth in (1, 2)
    for metric in ("preact_std", "predicted_std", "saturated_fraction", "grad_norm")
]
WATCHED = ("preact_std", "activation_std", "saturated_fraction", "grad_norm")
"""The watched statistics of `TINY`'s sigmoid layers at step 0 (the diagnostics') and after every epoch."""


def check_comparison(client, experiment_name, epochs=2, histograms=False):
    """Checks a `TINY` comparison in MLflow: one parent, four whole child runs with the layout's params, metrics and
    files, the parent's summary made of the children's curves; returns ``(parent, children)``."""
    parents, children = runs_of(client, experiment_name)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["initlab.run_key"] for c in children) == [
        "nielsen-default/seed=0",
        "nielsen-default/seed=1",
        "nielsen-large/seed=0",
        "nielsen-large/seed=1",
    ]
    results = {}
    for child in children:
        assert child.info.status == "FINISHED"
        assert set(child.data.params) == CHILD_PARAMS
        assert child.data.params["sizes"] == "[784, 30, 10]"
        assert child.data.params["kernel_initializer"].startswith(
            "ScaledGaussian {" if child.data.params["scheme"] == "nielsen-default" else "RandomNormal {"
        )
        for key in EPOCH_METRICS:
            history = client.get_metric_history(child.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), key
        accuracy = [
            m.value for m in sorted(client.get_metric_history(child.info.run_id, "val_accuracy"), key=lambda m: m.step)
        ]
        results.setdefault(child.data.params["scheme"], []).append({"val_accuracy": accuracy})
        # Its own summary, at the step of its last epoch: what the UI's bar charts and runs table compare.
        for key, value in (("final_val_accuracy", accuracy[-1]), ("best_val_accuracy", max(accuracy))):
            (metric,) = client.get_metric_history(child.info.run_id, key)
            assert (metric.value, metric.step) == (pytest.approx(value), epochs), key
        assert "model/model.keras" in [a.path for a in client.list_artifacts(child.info.run_id, "model")]
        for key in INIT_METRICS:  # diagnostics of the untrained model, at step 0
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == [0], key
        for depth, stat in itertools.product((1, 2), WATCHED):  # the layers watched: step 0 is the diagnostics'
            history = sorted(
                client.get_metric_history(child.info.run_id, f"layers/layer{depth}/{stat}"), key=lambda m: m.step
            )
            assert [m.step for m in history] == list(range(epochs + 1)), (depth, stat)
            (initial,) = client.get_metric_history(child.info.run_id, f"init/layer{depth}/{stat}")
            assert history[0].value == initial.value and all(math.isfinite(m.value) for m in history)
            ratios = client.get_metric_history(child.info.run_id, f"layers/layer{depth}/update_ratio")
            assert sorted(m.step for m in ratios) == list(range(1, epochs + 1)) and all(m.value > 0 for m in ratios)
        init_files = {a.path for a in client.list_artifacts(child.info.run_id, "init")}
        assert init_files == {"init/diagnostics.md", "init/initializers.json"} | (
            {"init/activations.png"} if histograms else set()
        )
        layers = json.loads(Path(client.download_artifacts(child.info.run_id, "init/initializers.json")).read_text())
        assert len(layers) == len(json.loads(child.data.params["sizes"])) - 1  # every Dense layer's initializers
        assert layers[0]["kernel"] == child.data.params["kernel_initializer"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.png", "layers.png", "summary.csv", "summary.md", "spec.json", "original-spec.yaml"} <= artifacts
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


FACTORIES = """\
import keras


def dense(scheme, units, activation, name):
    return keras.layers.Dense(units, activation=activation, kernel_initializer=scheme.kernel(),
                              bias_initializer=scheme.bias(), name=name)


def build(scheme, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    h = keras.layers.Flatten()(inputs)
    h = dense(scheme, 64, "relu", "a")(h)
    h = dense(scheme, 64, "relu", "b")(h)
    return keras.Model(inputs, dense(scheme, num_classes, "softmax", "out")(h))


def sequential(scheme, input_shape, num_classes):
    return keras.Sequential([keras.layers.Flatten(), dense(scheme, num_classes, "softmax", "out")])


def raises(scheme, input_shape, num_classes):
    raise RuntimeError("no GPU here")


def not_a_model(scheme, input_shape, num_classes):
    return "a model"


def exits(scheme, input_shape, num_classes):
    import sys
    sys.exit(0)


def wrong_classes(scheme, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, dense(scheme, num_classes + 1, "softmax", "out")(keras.layers.Flatten()(inputs)))


def logits(scheme, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, dense(scheme, num_classes, None, "out")(keras.layers.Flatten()(inputs)))


def no_arguments():
    return None
"""
"""Model factories as a user writes them, good and bad (the `factories` fixture writes them to models/factories.py)."""
RAISE_LINE = FACTORIES.splitlines().index('    raise RuntimeError("no GPU here")') + 1
FACTORY_SPEC = {
    "name": "factory",
    "dataset": "mnist-10k",
    "subset": {"train": 512, "val": 128},
    "schemes": ["he", "glorot"],
    "seeds": [0],
    "epochs": 2,
    "batch_size": 32,
}


@pytest.fixture
def factories(tmp_path):
    """A folder with `FACTORIES` in models/factories.py."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "factories.py").write_text(FACTORIES)
    return tmp_path


def write_factory_spec(folder, **changes):
    """`FACTORY_SPEC` with the factory ``build`` of `FACTORIES` and ``changes``, as ``spec.yaml`` in ``folder``."""
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({**FACTORY_SPEC, "model": {"factory": "models/factories.py:build"}, **changes}))
    return path


def saved_model(client, run):
    """The model a child run saved, loaded."""
    import keras

    return keras.saving.load_model(client.download_artifacts(run.info.run_id, "model/model.keras"))


def pytest_collection_modifyitems(items):
    """The long tests (``integration``) first: spread over the processes at once, they end together instead of
    leaving one process busy at the end (pytest-xdist hands tests out in this order)."""
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)
