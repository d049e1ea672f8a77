"""Connecting to Ray (`initlab.cluster`) with a real Ray: a local instance and a head node this test starts,
both on 127.0.0.1 only; an address where nothing answers.

The tests connect this process to Ray with `connect`, which sets Ray's loopback setting before Ray is imported
(Ray reads it once); the head node and the Ctrl-C test's command are processes of their own. Everything runs
with ``RAY_AUTH_MODE=disabled`` (Ray 2.60 turns token authentication on for a new cluster and would write
``~/.ray/auth_token``), but for the head node with token authentication, whose home folder is the test's."""

import os
import secrets
import socket
import subprocess
import sys
import time

import pytest

from conftest import RAY_ENV, free_port, head_node, listening, on_loopback, ray_env
from initlab.cluster import (
    LOOPBACK_VARIABLE,
    PROBE_TIMEOUT,
    Cluster,
    ClusterUnavailableError,
    _listeners_are_mine,
    check_store_reachable,
    connect,
    disconnect,
    parse_address,
)


def test_addresses_are_checked_before_anything_starts():
    def parts(text):
        address = parse_address(text)
        assert str(address) == text
        return address.kind, address.host, address.port

    assert parts("local") == ("local", None, None)
    assert parts("auto") == ("auto", None, None)
    assert parts("127.0.0.1:6379") == ("gcs", "127.0.0.1", 6379)
    assert parts("ray://head.example:10001") == ("client", "head.example", 10001)
    assert parts("[::1]:6379") == ("gcs", "::1", 6379)
    for bad in ("", "127.0.0.1", "127.0.0.1:0", "head:65536", ":6379", "ray://head", "head:port"):
        with pytest.raises(ValueError, match=f"local, auto, HOST:PORT or ray://HOST:PORT .* Received: address={bad!r}"):
            parse_address(bad)
    with pytest.raises(TypeError, match="Received: address=6379"):
        parse_address(6379)


def test_the_command_refuses_a_malformed_address_before_it_starts(tmp_path, capsys):
    from initlab.cli import main

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


@pytest.mark.integration
@pytest.mark.xdist_group("ray")  # with the comparisons on Ray: one head node
def test_a_ray_head_node_on_loopback_is_this_machine(ray_head_node, monkeypatch):
    port, opened = ray_head_node
    assert any(address.endswith(f":{port:04X}") for address in opened) and on_loopback(opened), opened
    ray_env(monkeypatch)
    cluster = connect(f"127.0.0.1:{port}")
    try:
        import ray

        assert (cluster.remote, cluster.resources["CPU"]) == (False, 2.0)
        assert ray.get(ray.remote(lambda: 6 * 7).remote()) == 42
    finally:
        disconnect()


@pytest.mark.integration
@pytest.mark.xdist_group("ray")
def test_a_local_instance_listens_on_loopback_alone_and_its_workers_keep_it(monkeypatch):
    """``--ray`` alone: a Ray instance started here, every listener on 127.0.0.1, its workers started with the
    loopback setting (so that Ray never rewrites 127.0.0.1 to the machine's outward address)."""
    ray_env(monkeypatch)
    before = listening()
    cluster = connect("local", num_cpus=1)
    try:
        import ray

        assert (cluster.address, cluster.remote, cluster.resources["CPU"]) == ("local", False, 1.0)
        environ = ray.get(ray.remote(lambda: dict(os.environ)).remote())
        opened = listening() - before
    finally:
        disconnect()
    assert opened and on_loopback(opened), opened
    assert environ.get(LOOPBACK_VARIABLE) == "0"


def test_a_store_on_this_disk_is_refused_for_a_cluster_of_other_machines(tmp_path):
    elsewhere, here = Cluster("ray://head:10001", True, {}), Cluster("local", False, {})
    for uri in (f"sqlite:///{tmp_path / 'mlflow.db'}", f"file://{tmp_path}", str(tmp_path / "mlruns")):
        with pytest.raises(ClusterUnavailableError, match=f"cannot reach the store {uri} .* --tracking-uri http://"):
            check_store_reachable(uri, elsewhere)
        check_store_reachable(uri, here)  # workers on this machine share its disk
    check_store_reachable("http://127.0.0.1:5000", elsewhere)


DRIVER = """
import sys

import ray

from initlab.cluster import ClusterUnavailableError, connect

try:
    connect(sys.argv[1])
except ClusterUnavailableError as e:
    sys.exit(f"refused: {e}")
print(ray.get(ray.remote(lambda: 6 * 7).remote()))
"""
"""What ``initlab compare CONFIG --ray ADDRESS`` does first: `connect` in a new process, then a task."""


@pytest.mark.integration
@pytest.mark.xdist_group("ray")
def test_this_users_head_node_with_token_authentication_is_reached_with_the_users_token(tmp_path):
    """After ``initlab compare --ray`` (a local instance: Ray 2.60 turns token authentication on and writes
    ``~/.ray/auth_token``), ``ray start --head`` uses the token, and ``--ray 127.0.0.1:PORT`` sends it; without
    it, the refusal says how to send one."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))  # what Ray writes
    env = {key: value for key, value in RAY_ENV.items() if not key.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # initlab.cluster.LOOPBACK_VARIABLE
    with head_node(env, cpus=1) as port:
        address = f"127.0.0.1:{port}"
        connected = subprocess.run(
            [sys.executable, "-c", DRIVER, address], env=env, capture_output=True, text=True, timeout=120
        )
        assert connected.returncode == 0 and connected.stdout == "42\n", connected.stderr[-3000:]
        assert "Token authentication is enabled" not in connected.stderr  # Ray's notice for a cluster it starts
        (home / ".ray" / "auth_token").unlink()  # a user without the token: the head node asks for one
        refused = subprocess.run(
            [sys.executable, "-c", DRIVER, address], env=env, capture_output=True, text=True, timeout=120
        )
    assert refused.returncode == 1
    assert f"refused: cannot connect to the Ray cluster at {address}: " in refused.stderr, refused.stderr[-3000:]
    assert refused.stderr.rstrip().endswith(
        "if the cluster uses token authentication, set RAY_AUTH_MODE=token here, with the cluster's token in "
        "~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
    ), refused.stderr[-3000:]


def test_a_port_this_user_listens_on_is_told_from_one_nobody_listens_on():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert _listeners_are_mine(server.getsockname()[1])
    assert not _listeners_are_mine(free_port())
