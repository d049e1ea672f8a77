"""``initlab serve``: MLflow's tracking server with the project's defaults, for comparisons run elsewhere
(`--tracking-uri http://HOST:PORT`, the workers of a Ray cluster) and for a team.

Defaults: 127.0.0.1:5000 (this machine only); the default store of ``initlab compare`` in the current
folder (``tracking/mlflow.db``: the server shows the comparisons run here); artifacts served by the
server itself (``--serve-artifacts``, into ``tracking/server-artifacts``), so clients need no access to
an artifact store. Options after ``--`` go to ``mlflow server`` unchanged.

**A login beyond this machine.** An MLflow server without a login lets anyone who reaches it create,
change and delete runs, so a ``--host`` other than a loopback address is refused unless
``MLFLOW_AUTH_ADMIN_PASSWORD`` is set (or ``--insecure``, on a network you trust). With it, the server
runs MLflow's basic-auth app: the admin user (``MLFLOW_AUTH_ADMIN_USERNAME``, default ``admin``) is
created with that password on the first start, users and permissions live in ``--auth-db``, and the
app's settings (no secret in them) are written to ``tracking/basic_auth.ini``. The login forms' CSRF
key (``MLFLOW_FLASK_SERVER_SECRET_KEY``) is random per start unless set. Secrets stay in the
environment, never on the command line.

**No job runner.** MLflow's server starts a job runner and three Huey consumer processes for its GenAI
scorer jobs, which no comparison uses: about 15 s of CPU and 600 MB at every start on a 2-core machine.
``initlab serve`` sets ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` unless it is set already.

Standard library only: ``initlab serve`` imports no Keras, TensorFlow or library (`initlab.console`),
then replaces its process with ``python -m mlflow server``.

>>> argv, env = server_command(parser().parse_args([]), {})   # doctest: +SKIP
>>> argv[3:5]                                                  # doctest: +SKIP
['--backend-store-uri', 'sqlite:////home/me/tracking/mlflow.db']
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
"""MLflow basic-auth's permissions, for ``--default-permission``."""

_MLFLOW_HOST_OPTIONS = ("-h", "--host", "--port", "-p")


class ServeError(ValueError):
    """``initlab serve`` refuses to start; the message says why and what to do."""


def parser(prog: str = "initlab serve") -> argparse.ArgumentParser:
    """The options of ``initlab serve`` (`add_arguments`)."""
    return add_arguments(argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0]))


def add_arguments(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``initlab serve``'s options to ``command``; returns it."""
    store = Path("tracking")
    command.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1: this machine only; any other needs a login)")
    command.add_argument("--port", type=int, default=5000, help="default 5000")
    command.add_argument("--backend-store-uri", default=f"sqlite:///{(store / 'mlflow.db').resolve()}",
                         help="any SQLAlchemy URI (default: initlab compare's default store, tracking/mlflow.db)")
    command.add_argument("--artifacts-destination", default=str((store / "server-artifacts").resolve()),
                         help="where the server stores the artifacts it serves (default tracking/server-artifacts)")
    command.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    command.add_argument("--allowed-hosts", help="Host headers to answer (against DNS rebinding; default MLflow's)")
    command.add_argument("--cors-allowed-origins", help="browser origins allowed to call the API")
    command.add_argument("--auth-db", default=f"sqlite:///{(store / 'auth.db').resolve()}",
                         help="users and permissions of the basic-auth app (default tracking/auth.db)")
    command.add_argument("--auth-config", default=str((store / "basic_auth.ini").resolve()),
                         help="where the basic-auth app's settings are written (default tracking/basic_auth.ini)")
    command.add_argument("--default-permission", default="READ", choices=PERMISSIONS,
                         help="what every user may do with experiments they do not own (default READ)")
    command.add_argument("--insecure", action="store_true",
                         help="listen beyond this machine without a login (only on a network you trust)")
    command.add_argument("mlflow_options", nargs="*", metavar="-- MLFLOW_OPTION",
                         help="after --: options passed to mlflow server unchanged")
    return command


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``).

    >>> is_loopback("127.0.0.2"), is_loopback("0.0.0.0")
    (True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def server_command(options: argparse.Namespace, environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and environment for ``options`` (`parser`) started from the environment
    ``environ``: MLflow's job runner off unless ``environ`` says otherwise. With ``MLFLOW_AUTH_ADMIN_PASSWORD`` set: MLflow's basic-auth app, its settings file named in
    ``MLFLOW_AUTH_CONFIG_PATH`` (its text: `auth_settings`), and a random CSRF key unless one is set.

    Raises:
        ServeError: a host beyond this machine without a login or ``--insecure``; ``--host``/``--port`` among
            the options for ``mlflow server`` (the login check reads ``--host``).
    """
    for option in options.mlflow_options:
        if option.split("=")[0] in _MLFLOW_HOST_OPTIONS:
            raise ServeError(f"pass {option.split('=')[0]} to initlab serve, before --, not to mlflow server: "
                             "the login check reads it")
    argv = [sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", options.backend_store_uri,
            "--artifacts-destination", options.artifacts_destination, "--serve-artifacts",
            "--host", options.host, "--port", str(options.port), "--workers", str(options.workers)]
    if options.allowed_hosts:
        argv += ["--allowed-hosts", options.allowed_hosts]
    if options.cors_allowed_origins:
        argv += ["--cors-allowed-origins", options.cors_allowed_origins]
    env = dict(environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if env.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
        env["MLFLOW_AUTH_CONFIG_PATH"] = options.auth_config
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        argv += ["--app-name", "basic-auth"]
    elif not is_loopback(options.host) and not options.insecure:
        raise ServeError(
            f"--host {options.host} makes the server reachable from other machines, so it needs a login: set "
            "MLFLOW_AUTH_ADMIN_PASSWORD (see tracking/README.md), or pass --insecure on a network you trust"
        )
    return argv + list(options.mlflow_options), env


def auth_settings(options: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The basic-auth app's settings file (no secret in it: the admin's password stays in the environment)."""
    return (f"[mlflow]\ndefault_permission = {options.default_permission}\ndatabase_uri = {options.auth_db}\n"
            f"admin_username = {environ.get('MLFLOW_AUTH_ADMIN_USERNAME', 'admin')}\n")


def start(options: argparse.Namespace) -> int:
    """Replaces this process with MLflow's server for ``options`` (`parser`); returns 2, after saying why on
    stderr, when it refuses to start."""
    try:
        command, env = server_command(options, os.environ)
    except ServeError as e:
        print(f"initlab serve: {e}", file=sys.stderr)
        return 2
    for path in (options.artifacts_destination, *_sqlite_files(options.backend_store_uri, options.auth_db)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if "MLFLOW_AUTH_CONFIG_PATH" in env:
        Path(options.auth_config).parent.mkdir(parents=True, exist_ok=True)
        Path(options.auth_config).write_text(auth_settings(options, env))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def _sqlite_files(*uris: str) -> list[str]:
    return [uri[len("sqlite:///"):] for uri in uris if uri.startswith("sqlite:///")]
