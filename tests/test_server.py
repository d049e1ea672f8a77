"""``initlab serve`` (`initlab.server`): MLflow's server with the project's defaults, its login rules, and a real
authenticated server that comparisons log to."""

import json
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from initlab.cli import main

from conftest import Server, free_port, one_error_line, runs_of, write_spec


@pytest.mark.integration
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


@pytest.mark.integration
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
    from initlab.server import auth_settings, parser, server_command

    monkeypatch.chdir(tmp_path)
    options = parser().parse_args([])
    argv, env = server_command(options, {})
    assert argv[1:4] == ["-m", "mlflow", "server"]
    assert argv[4:] == ["--backend-store-uri", f"sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}",  # compare's default
                        "--artifacts-destination", str(tmp_path / "tracking" / "server-artifacts"), "--serve-artifacts",
                        "--host", "127.0.0.1", "--port", "5000", "--workers", "1"]
    assert env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no login asked for, none set up; no job runner
    _, env = server_command(options, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}  # the user's choice kept
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
