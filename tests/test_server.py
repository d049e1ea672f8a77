"""``initlab serve`` (`initlab.server`): MLflow's server with the project's defaults, its login rules, and a real
authenticated server that comparisons log to."""

import json
import os
import re
import stat
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from conftest import Server, free_port, one_error_line, runs_of, write_spec
from initlab.cli import main

PASSWORD = "a password of 24 letters"
"""An admin password MLflow's login takes (at least 12 characters)."""


def mode(path) -> int:
    """The permission bits of the file ``path`` (``0o600``: its owner's alone)."""
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.integration
def test_an_authenticated_server(tmp_path, capsys, monkeypatch):
    password = "correct horse battery staple"
    server = Server(tmp_path, free_port(), MLFLOW_AUTH_ADMIN_PASSWORD=password).start()
    try:
        # The users' password hashes (MLflow made its tables in the file initlab serve created) and the
        # settings: this user's alone.
        assert (tmp_path / "auth.db").stat().st_size > 0
        assert mode(tmp_path / "auth.db") == mode(tmp_path / "basic_auth.ini") == 0o600
        request = urllib.request.Request(
            server.uri + "/api/2.0/mlflow/experiments/create",
            method="POST",
            data=json.dumps({"name": "intruder"}).encode(),
            headers={"Content-Type": "application/json"},
        )
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
        assert (
            done.returncode == 2
            and f"--host {host} makes the server reachable from other machines, so it "
            "needs a login: set MLFLOW_AUTH_ADMIN_PASSWORD"
            in done.stderr
        ), done.stderr
        assert time.perf_counter() - started < 5  # refused by the launcher: no TensorFlow, no MLflow imported
    done = subprocess.run(server.command + ["--", "-h0.0.0.0"], env=env, capture_output=True, text=True, timeout=60)
    assert (
        done.returncode == 2
        and "-h0.0.0.0 sets mlflow server's --host: pass --host to initlab serve, before --, not to mlflow server"
        in done.stderr
    ), done.stderr
    assert not (tmp_path / "server.db").exists()


def test_serve_command_line_and_login_settings(tmp_path, monkeypatch):
    from initlab.server import ServeError, auth_settings, parser, server_command

    with pytest.raises(
        ServeError, match="MLFLOW_AUTH_ADMIN_PASSWORD has 11 characters; MLflow's login needs at least 12"
    ):
        server_command(parser().parse_args([]), {"MLFLOW_AUTH_ADMIN_PASSWORD": "x" * 11})  # its server fails at start

    monkeypatch.chdir(tmp_path)
    options = parser().parse_args([])
    argv, env = server_command(options, {})
    assert argv[1:4] == ["-m", "mlflow", "server"]
    assert argv[4:] == [
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}",  # compare's default
        "--artifacts-destination",
        str(tmp_path / "tracking" / "server-artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
        "--workers",
        "1",
    ]
    assert env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no login asked for, none set up; no job runner
    _, env = server_command(options, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}  # the user's choice kept
    for host in ("localhost", "127.0.0.2", "::1"):
        server_command(parser().parse_args(["--host", host]), {})  # this machine only: no login needed
    argv, _ = server_command(parser().parse_args(["--host", "0.0.0.0", "--insecure", "--", "--dev"]), {})
    assert argv[-1] == "--dev"
    options = parser().parse_args(["--host", "0.0.0.0", "--default-permission", "NO_PERMISSIONS"])
    secret = {"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD}
    (argv, first), (_, second) = server_command(options, secret), server_command(options, secret)
    assert argv[-2:] == ["--app-name", "basic-auth"] and first["MLFLOW_AUTH_CONFIG_PATH"] == options.auth_config
    assert re.fullmatch("[0-9a-f]{64}", first["MLFLOW_FLASK_SERVER_SECRET_KEY"])
    assert first["MLFLOW_FLASK_SERVER_SECRET_KEY"] != second["MLFLOW_FLASK_SERVER_SECRET_KEY"]  # random per start
    _, env = server_command(options, {**secret, "MLFLOW_FLASK_SERVER_SECRET_KEY": "k"})
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "k"  # one set is kept (several servers share it)
    text = auth_settings(options, {"MLFLOW_AUTH_ADMIN_USERNAME": "root", **secret})
    assert text == (
        "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{tmp_path / 'tracking' / 'auth.db'}\nadmin_username = root\n"
    )
    assert PASSWORD not in text  # the password stays in the environment


LISTENING = [
    (["--host", "0.0.0.0"], "--host"),
    (["--host=0.0.0.0"], "--host=0.0.0.0"),
    (["-h", "0.0.0.0"], "-h"),
    (["-h0.0.0.0"], "-h0.0.0.0"),
    (["-h=0.0.0.0"], "-h=0.0.0.0"),
    (["-w2", "-h0.0.0.0"], "-h0.0.0.0"),
    (["--port", "5001"], "--port"),
    (["--port=5001"], "--port=5001"),
    (["-p", "5001"], "-p"),
    (["-p5001"], "-p5001"),
]
"""Options after ``--`` that choose where mlflow server listens, in the spellings Click reads, and the word of them
that Click reads as the option."""


@pytest.mark.parametrize("tokens, option", LISTENING, ids=[" ".join(tokens) for tokens, _ in LISTENING])
def test_serve_refuses_where_to_listen_after_the_double_dash_in_every_spelling(tokens, option, monkeypatch):
    import mlflow.cli

    from initlab.server import ServeError, parser, server_command

    for variable in ("MLFLOW_HOST", "MLFLOW_PORT"):
        monkeypatch.delenv(variable, raising=False)
    name = "host" if option.startswith(("-h", "--h")) else "port"
    defaults = mlflow.cli.server.make_context("server", []).params
    read = mlflow.cli.server.make_context("server", list(tokens)).params  # Click's own parser: it sets the option
    assert read[name] != defaults[name], (tokens, read[name])
    for before, environ in (([], {}), (["--insecure"], {}), ([], {"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD})):
        with pytest.raises(ServeError) as refused:
            server_command(parser().parse_args([*before, "--", *tokens]), environ)
        assert str(refused.value) == (
            f"{option} sets mlflow server's --{name}: pass --{name} to initlab serve, "
            "before --, not to mlflow server (the login check reads it)"
        )


def test_click_reads_no_other_spelling_of_where_to_listen():
    """What the launcher's rule rests on (`initlab.server.LISTEN_OPTIONS`): mlflow server's host and port options
    are named as it says; every short option takes a value (so no ``-Xh0.0.0.0`` where ``-X`` is a flag); Click
    takes no abbreviation of a long option; the web server's options read the variables it names."""
    import click
    import mlflow.cli

    from initlab.server import LISTEN_OPTIONS, WEB_SERVER_OPTIONS

    params = {param.name: param for param in mlflow.cli.server.params}
    assert {opt: f"--{name}" for name in ("host", "port") for opt in params[name].opts} == LISTEN_OPTIONS
    short = [param for param in params.values() if any(len(opt) == 2 for opt in param.opts)]
    assert short and all(not param.is_flag and param.nargs == 1 for param in short), short
    for abbreviation in ("--ho", "--hos", "--po", "--por"):
        with pytest.raises(click.NoSuchOption):
            mlflow.cli.server.make_context("server", [abbreviation, "0.0.0.0"])
    assert {
        param.opts[0]: param.envvar for param in params.values() if param.name.endswith("_opts")
    } == WEB_SERVER_OPTIONS


def test_serve_refuses_the_web_server_options_without_a_login(monkeypatch):
    from gunicorn.config import Config

    from initlab.server import ServeError, parser, server_command

    # gunicorn adds the address of its -b to the one mlflow server gives it: it would listen on both.
    bind = Config().parser().parse_args(["-b", "0.0.0.0:5000", "-b", "127.0.0.1:5000"]).bind
    assert bind == ["0.0.0.0:5000", "127.0.0.1:5000"]
    for tokens in (["--gunicorn-opts", "-b 0.0.0.0:5000"], ["--uvicorn-opts=--reload"], ["--waitress-opts", ""]):
        with pytest.raises(
            ServeError,
            match=f"^{tokens[0].split('=')[0]} can make the web server listen beyond "
            "--host 127.0.0.1, so it needs a login: set MLFLOW_AUTH_ADMIN_PASSWORD",
        ):
            server_command(parser().parse_args(["--", *tokens]), {})
        server_command(parser().parse_args(["--insecure", "--", *tokens]), {})  # the user's call
        server_command(parser().parse_args(["--", *tokens]), {"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD})  # behind a login
    environ = {"MLFLOW_GUNICORN_OPTS": "-b 0.0.0.0:5000"}  # what Click reads when the option is not given
    with pytest.raises(ServeError, match="^MLFLOW_GUNICORN_OPTS='-b 0.0.0.0:5000' in the environment can make"):
        server_command(parser().parse_args([]), environ)
    server_command(parser().parse_args([]), {**environ, "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD})
    server_command(parser().parse_args([]), {"MLFLOW_GUNICORN_OPTS": ""})  # empty: Click reads none
    # With a login, the app is initlab serve's: another --app-name would replace basic-auth.
    with pytest.raises(ServeError, match="^--app-name=custom would replace the login"):
        server_command(parser().parse_args(["--", "--app-name=custom"]), {"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD})
    argv, _ = server_command(parser().parse_args(["--", "--app-name", "custom"]), {})  # no login: the user's app
    assert argv[-2:] == ["--app-name", "custom"]


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_serve_makes_the_login_files_private_whatever_the_umask(tmp_path, monkeypatch, capsys, umask):
    from initlab.server import auth_settings, parser, start

    started = []
    monkeypatch.setattr(os, "execve", lambda *command: started.append(command))  # no server: the files only
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tracking").mkdir()  # writable whatever the umask below
    auth_db, settings = tmp_path / "tracking" / "auth.db", tmp_path / "tracking" / "basic_auth.ini"
    options = parser().parse_args([])
    previous = os.umask(umask)
    try:
        start(options)
        assert len(started) == 1 and mode(auth_db) == mode(settings) == 0o600
        assert auth_db.read_bytes() == b"" and settings.read_text() == auth_settings(options, os.environ)
        # Files of an earlier start, readable by all: tightened, the users kept, the settings rewritten.
        auth_db.write_bytes(b"users")
        settings.write_text("[mlflow]\n" + "old = 1\n" * 100)
        os.chmod(auth_db, 0o644)
        os.chmod(settings, 0o666)
        start(options)
    finally:
        os.umask(previous)
    assert len(started) == 2 and mode(auth_db) == mode(settings) == 0o600
    assert auth_db.read_bytes() == b"users" and settings.read_text() == auth_settings(options, os.environ)
    assert not capsys.readouterr().err
