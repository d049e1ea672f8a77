"""Connecting to Ray (`keras_initlab.cluster`) with a real Ray: a local instance and a head node this test starts,
both on 127.0.0.1 only; an address where nothing answers.

The tests connect this process to Ray with `connect`, which sets Ray's loopback setting before Ray is imported
(Ray reads it once); the head node and the Ctrl-C test's command are processes of their own. Everything runs
with ``RAY_AUTH_MODE=disabled`` (Ray 2.60 turns token authentication on for a new cluster and would write
``~/.ray/auth_token``)."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from keras_initlab.cluster import (
    LOOPBACK_VARIABLE, PROBE_TIMEOUT, Cluster, ClusterUnavailableError, check_store_reachable, connect, disconnect,
    parse_address,
)

ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

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
    return {address.split(":")[0] for address in sockets} <= LOOPBACK


def ray_env(monkeypatch) -> None:
    """This process's Ray: no token authentication, no usage statistics (as `ENV`)."""
    for key in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED"):
        monkeypatch.setenv(key, ENV[key])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_addresses_are_checked_before_anything_starts():
    assert parse_address("local") == ("local", None, None)
    assert parse_address("auto") == ("auto", None, None)
    assert parse_address("127.0.0.1:6379") == ("gcs", "127.0.0.1", 6379)
    assert parse_address("ray://head.example:10001") == ("client", "head.example", 10001)
    assert parse_address("[::1]:6379") == ("gcs", "::1", 6379)
    for bad in ("", "127.0.0.1", "127.0.0.1:0", "head:65536", ":6379", "ray://head", "head:port"):
        with pytest.raises(ValueError, match=f"local, auto, HOST:PORT or ray://HOST:PORT .* Received: address={bad!r}"):
            parse_address(bad)
    with pytest.raises(TypeError, match="Received: address=6379"):
        parse_address(6379)


def test_the_command_refuses_a_malformed_address_before_it_starts(tmp_path, capsys):
    from keras_initlab.cli import main

    with pytest.raises(SystemExit) as refused:
        main(["compare", str(tmp_path / "none.yaml"), "--ray", "head"])
    assert refused.value.code == 2
    assert "argument --ray: ADDRESS must be local, auto, HOST:PORT or ray://HOST:PORT" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no store, nothing


def test_an_address_where_nothing_answers_is_refused_within_seconds_before_ray_starts():
    port = free_port()  # nothing listens there
    started = time.perf_counter()
    with pytest.raises(ClusterUnavailableError) as refused:
        connect(f"127.0.0.1:{port}")
    assert time.perf_counter() - started < PROBE_TIMEOUT
    # The TCP probe's message: Ray's own connection attempts (minutes of retries) never started.
    assert str(refused.value).startswith(f"no Ray cluster answers at 127.0.0.1:{port} (ConnectionRefusedError")
    assert "ray start --head" in str(refused.value)


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what importlib finds for a package that is not installed
    with pytest.raises(ClusterUnavailableError, match=r"Ray is not installed here: pip install 'keras-initlab\[ray\]'"):
        connect("local")


@pytest.fixture(scope="module")
def head_node():
    """A Ray head node on 127.0.0.1:PORT, in a session of its own, for this module's tests; stopped by killing that
    session's processes (``ray stop --force`` would stop every Ray of this user on the machine). Yields the port and
    the sockets the head node opened."""
    port = free_port()
    before = listening()
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's Unix sockets go there
    env = {**ENV, LOOPBACK_VARIABLE: "0"}
    ray = Path(sys.executable).with_name("ray")
    # Started as from a shell's background job (`ray start ... &`): SIGINT ignored, which its workers inherit.
    ignoring_sigint = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                       "os.execv(sys.argv[1], sys.argv[1:])"]
    start = subprocess.Popen(
        [*ignoring_sigint, str(ray), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--disable-usage-stats", "--include-dashboard=false", "--temp-dir", folder],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    output, _ = start.communicate(timeout=180)
    assert start.returncode == 0, output
    try:
        yield port, listening() - before
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(start.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(5 if sig == signal.SIGTERM else 0)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_head_node_on_loopback_is_this_machine(head_node, monkeypatch):
    port, opened = head_node
    assert any(address.endswith(f":{port:04X}") for address in opened) and on_loopback(opened), opened
    ray_env(monkeypatch)
    cluster = connect(f"127.0.0.1:{port}")
    try:
        import ray

        assert (cluster.remote, cluster.resources["CPU"]) == (False, 2.0)
        assert ray.get(ray.remote(lambda: 6 * 7).remote()) == 42
    finally:
        disconnect()


def test_a_store_on_this_disk_is_refused_for_a_cluster_of_other_machines(tmp_path):
    elsewhere, here = Cluster("ray://head:10001", True, {}), Cluster("local", False, {})
    for uri in (f"sqlite:///{tmp_path / 'mlflow.db'}", f"file://{tmp_path}", str(tmp_path / "mlruns")):
        with pytest.raises(ClusterUnavailableError, match=f"cannot reach the store {uri} .* --tracking-uri http://"):
            check_store_reachable(uri, elsewhere)
        check_store_reachable(uri, here)  # workers on this machine share its disk
    check_store_reachable("http://127.0.0.1:5000", elsewhere)


class EpochWatch:
    """A progress stream that remembers the lines and tells when the first epoch is reported."""

    def __init__(self):
        self.lines, self.first_epoch = [], threading.Event()

    def write(self, text):
        self.lines.append(text)
        if "epoch 1/" in text:
            self.first_epoch.set()

    def flush(self):
        pass


def unit_workers() -> list[int]:
    """PIDs of the Ray workers running a unit of work now (Ray names them ``ray::_train_unit``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and b"ray::_train_unit" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def children_of(outcome) -> dict:
    """``{run key: (status, params, {metric: values by step})}`` of a comparison's child runs."""
    from mlflow.tracking import MlflowClient

    from test_compare import runs_of

    client = MlflowClient(outcome.tracking_uri)
    (parent,), runs = runs_of(client, "tiny")
    assert parent.info.status == "FINISHED"
    return {run.data.tags["initlab.run_key"]: (run.info.status, run.data.params, {
        key: [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
        for key in ("val_loss", "val_accuracy", "train_loss")}) for run in runs}


def test_on_a_local_instance_a_killed_worker_is_retried_and_the_runs_are_those_made_here(tmp_path, monkeypatch):
    """One comparison on a local Ray instance, a worker killed mid-unit: Ray runs its unit again, each run is
    written once, whole, with the params and curves the same comparison gives here. Also: the instance listens on
    127.0.0.1 alone, and its workers inherit the loopback setting."""
    ray_env(monkeypatch)
    from keras_initlab.comparison import run_comparison
    from test_compare import write_spec

    spec = write_spec(tmp_path, seeds=[0, 1], epochs=30, subset={"train": 4000, "val": 200})
    watch, seen = EpochWatch(), {}
    before = listening()

    def kill_a_worker_after_the_first_epoch():
        watch.first_epoch.wait(timeout=300)
        pid = unit_workers()[0]
        seen["opened"] = listening() - before
        seen["environ"] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker_after_the_first_epoch)
    killer.start()
    on_ray = run_comparison(spec, tracking_uri=f"sqlite:///{tmp_path / 'ray.db'}", ray="local", progress=watch)
    killer.join()
    assert seen["opened"] and on_loopback(seen["opened"]), seen["opened"]
    assert f"{LOOPBACK_VARIABLE}=0".encode() in seen["environ"]
    assert not on_ray.failures  # the killed unit was run again: Ray's retry
    here = run_comparison(spec, tracking_uri=f"sqlite:///{tmp_path / 'here.db'}")
    runs = {"here": children_of(here), "ray": children_of(on_ray)}
    assert sorted(runs["ray"]) == sorted(runs["here"]) == sorted(
        f"{scheme}/seed={seed}" for scheme in ("nielsen-default", "nielsen-large") for seed in (0, 1))  # each once
    for key, (status, params, curves) in runs["here"].items():
        ray_status, ray_params, ray_curves = runs["ray"][key]
        assert status == ray_status == "FINISHED" and ray_params == params
        for metric, values in curves.items():
            assert len(ray_curves[metric]) == 30  # whole: every epoch once
            assert ray_curves[metric] == pytest.approx(values, rel=1e-5), (key, metric)
    assert on_ray.summary == here.summary


def test_on_a_head_node_ctrl_c_kills_the_runs_in_flight_and_resume_finishes_them(head_node, tmp_path):
    from mlflow.tracking import MlflowClient

    from test_compare import runs_of, write_spec

    port, _ = head_node
    spec = write_spec(tmp_path, seeds=[0, 1], epochs=60, subset={"train": 4000, "val": 200})
    uri = f"sqlite:///{tmp_path / 'c.db'}"
    command = [str(Path(sys.executable).with_name("initlab")), "compare", str(spec), "--tracking-uri", uri,
               "--ray", f"127.0.0.1:{port}"]
    driver = subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in driver.stderr:
        if "epoch 1/60" in line:
            break
    driver.send_signal(signal.SIGINT)  # Ctrl-C, to the driver, while the first unit has ~59 epochs to go
    driver.communicate(timeout=120)
    assert driver.returncode != 0
    client = MlflowClient(uri)
    (parent,), children = runs_of(client, "tiny")
    assert parent.info.status == "KILLED"
    epochs = {run.info.status: [] for run in children}
    for run in children:
        epochs[run.info.status].append(len(client.get_metric_history(run.info.run_id, "val_accuracy")))
    assert set(epochs) <= {"KILLED", "FINISHED"} and set(epochs.get("FINISHED", [])) <= {60}, epochs  # none half-written
    assert max(epochs.get("KILLED", [0])) >= 1, epochs  # the unit in flight was stopped, its epochs kept by its worker

    resumed = subprocess.run(command + ["--resume"], env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    (parent,), children = runs_of(client, "tiny")
    assert parent.info.status == "FINISHED"
    assert sorted(run.data.tags["initlab.run_key"] for run in children) == sorted(
        f"{scheme}/seed={seed}" for scheme in ("nielsen-default", "nielsen-large") for seed in (0, 1))
    assert {run.info.status for run in children} == {"FINISHED"}
