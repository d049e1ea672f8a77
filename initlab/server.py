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
app's settings are written to ``tracking/basic_auth.ini``. The login forms' CSRF key
(``MLFLOW_FLASK_SERVER_SECRET_KEY``) is random per start unless set. Secrets stay in the environment,
never on the command line. The settings (the auth store's URI may hold its password) and a SQLite
``--auth-db`` (the users' password hashes) are this user's alone: mode 0600 whatever the umask, made so
before the server starts, an existing file included (one from an earlier start may be world-readable).

**Where it listens is initlab serve's.** Options after ``--`` that would choose it are refused in
every spelling Click reads for ``mlflow server`` (``--host 0.0.0.0``, ``--host=0.0.0.0``,
``-h 0.0.0.0``, ``-h0.0.0.0``; the same for ``--port``/``-p``): pass them before ``--``. Without a
login (or ``--insecure``), so are the options passed to the web server (``--uvicorn-opts``,
``--gunicorn-opts``, ``--waitress-opts``, or their ``MLFLOW_*_OPTS`` variables: gunicorn's ``-b``
adds an address); with one, ``--app-name``, which would replace the login's app.

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

MIN_PASSWORD_LENGTH = 12
"""Shortest password MLflow's basic-auth app takes (its server fails at start with a traceback otherwise)."""

PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
"""MLflow basic-auth's permissions, for ``--default-permission``."""

LISTEN_OPTIONS = {"--host": "--host", "-h": "--host", "--port": "--port", "-p": "--port"}
"""``mlflow server``'s options that choose where it listens, by every name Click reads them by (Click reads
``-h0.0.0.0`` as ``-h 0.0.0.0``; it takes no abbreviation of a long option), and their long names."""

WEB_SERVER_OPTIONS = {
    "--uvicorn-opts": "MLFLOW_UVICORN_OPTS",
    "--gunicorn-opts": "MLFLOW_GUNICORN_OPTS",
    "--waitress-opts": None,
}
"""``mlflow server``'s options passed on to its web server, which can make it listen elsewhere too (gunicorn's
``-b`` adds an address), and the environment variables Click reads them from (None: none)."""


class ServeError(ValueError):
    """``initlab serve`` refuses to start; the message says why and what to do."""


def parser(prog: str = "initlab serve") -> argparse.ArgumentParser:
    """The options of ``initlab serve`` (`add_arguments`)."""
    return add_arguments(argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0]))


def add_arguments(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``initlab serve``'s options to ``command``; returns it."""
    store = Path("tracking")
    command.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; any other needs a login)",
    )
    command.add_argument("--port", type=int, default=5000, help="default 5000")
    command.add_argument(
        "--backend-store-uri",
        default=f"sqlite:///{(store / 'mlflow.db').resolve()}",
        help="any SQLAlchemy URI (default: initlab compare's default store, tracking/mlflow.db)",
    )
    command.add_argument(
        "--artifacts-destination",
        default=str((store / "server-artifacts").resolve()),
        help="where the server stores the artifacts it serves (default tracking/server-artifacts)",
    )
    command.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    command.add_argument("--allowed-hosts", help="Host headers to answer (against DNS rebinding; default MLflow's)")
    command.add_argument("--cors-allowed-origins", help="browser origins allowed to call the API")
    command.add_argument(
        "--auth-db",
        default=f"sqlite:///{(store / 'auth.db').resolve()}",
        help="users and permissions of the basic-auth app (default tracking/auth.db)",
    )
    command.add_argument(
        "--auth-config",
        default=str((store / "basic_auth.ini").resolve()),
        help="where the basic-auth app's settings are written (default tracking/basic_auth.ini)",
    )
    command.add_argument(
        "--default-permission",
        default="READ",
        choices=PERMISSIONS,
        help="what every user may do with experiments they do not own (default READ)",
    )
    command.add_argument(
        "--insecure",
        action="store_true",
        help="listen beyond this machine without a login (only on a network you trust)",
    )
    command.add_argument(
        "mlflow_options",
        nargs="*",
        metavar="-- MLFLOW_OPTION",
        help="after --: options passed to mlflow server unchanged",
    )
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
    ``environ``: MLflow's job runner off unless ``environ`` says otherwise. With ``MLFLOW_AUTH_ADMIN_PASSWORD`` set:
    MLflow's basic-auth app, its settings file named in ``MLFLOW_AUTH_CONFIG_PATH`` (its text: `auth_settings`), and a
    random CSRF key unless one is set.

    Raises:
        ServeError: a host beyond this machine without a login or ``--insecure``; an admin password shorter than
            `MIN_PASSWORD_LENGTH`; among the options for
            ``mlflow server``, a `LISTEN_OPTIONS` in any spelling Click reads (the login check reads ``--host``),
            a `WEB_SERVER_OPTIONS` (or its variable in ``environ``) without a login or ``--insecure``, or
            ``--app-name`` with a login.
    """
    login = bool(environ.get("MLFLOW_AUTH_ADMIN_PASSWORD"))
    if login and len(environ["MLFLOW_AUTH_ADMIN_PASSWORD"]) < MIN_PASSWORD_LENGTH:
        raise ServeError(
            f"MLFLOW_AUTH_ADMIN_PASSWORD has {len(environ['MLFLOW_AUTH_ADMIN_PASSWORD'])} characters; "
            f"MLflow's login needs at least {MIN_PASSWORD_LENGTH}"
        )
    _check_mlflow_options(options, environ, login)
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        options.backend_store_uri,
        "--artifacts-destination",
        options.artifacts_destination,
        "--serve-artifacts",
        "--host",
        options.host,
        "--port",
        str(options.port),
        "--workers",
        str(options.workers),
    ]
    if options.allowed_hosts:
        argv += ["--allowed-hosts", options.allowed_hosts]
    if options.cors_allowed_origins:
        argv += ["--cors-allowed-origins", options.cors_allowed_origins]
    env = dict(environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if login:
        env["MLFLOW_AUTH_CONFIG_PATH"] = options.auth_config
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        argv += ["--app-name", "basic-auth"]
    elif not is_loopback(options.host) and not options.insecure:
        raise ServeError(
            f"--host {options.host} makes the server reachable from other machines, so it needs a login: set "
            "MLFLOW_AUTH_ADMIN_PASSWORD (see tracking/README.md), or pass --insecure on a network you trust"
        )
    return argv + list(options.mlflow_options), env


def _check_mlflow_options(options: argparse.Namespace, environ: Mapping[str, str], login: bool) -> None:
    """Refuses the options for ``mlflow server`` that would undo the login check (`server_command`)."""
    for token in options.mlflow_options:
        name = _click_option(token)
        if name in LISTEN_OPTIONS:
            raise ServeError(
                f"{token} sets mlflow server's {LISTEN_OPTIONS[name]}: pass {LISTEN_OPTIONS[name]} to "
                "initlab serve, before --, not to mlflow server (the login check reads it)"
            )
        if name in WEB_SERVER_OPTIONS and not (login or options.insecure):
            raise ServeError(
                f"{name} can make the web server listen beyond --host {options.host}, so it needs a "
                "login: set MLFLOW_AUTH_ADMIN_PASSWORD, or pass --insecure on a network you trust"
            )
        if name == "--app-name" and login:
            raise ServeError(
                f"{token} would replace the login (MLflow's basic-auth app, on with "
                "MLFLOW_AUTH_ADMIN_PASSWORD): leave --app-name out"
            )
    for variable in WEB_SERVER_OPTIONS.values():
        if variable and environ.get(variable) and not (login or options.insecure):
            raise ServeError(
                f"{variable}={environ[variable]!r} in the environment can make the web server listen "
                f"beyond --host {options.host}, so it needs a login: set MLFLOW_AUTH_ADMIN_PASSWORD, "
                f"or pass --insecure on a network you trust, or unset {variable}"
            )


def _click_option(token: str) -> str | None:
    """The option that Click reads ``token`` of ``mlflow server``'s command line as: a long option's name
    (``--host`` of ``--host=0.0.0.0``), or ``-`` and the first letter (``-h`` of ``-h0.0.0.0``: mlflow server's
    short options all take a value, so the rest of the token is its value); None for a value."""
    if token.startswith("--"):
        return token.split("=", 1)[0]
    if token.startswith("-") and len(token) > 1:
        return token[:2]
    return None


def auth_settings(options: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The basic-auth app's settings file (the admin's password stays in the environment; ``--auth-db`` may hold
    the auth store's password)."""
    return (
        f"[mlflow]\ndefault_permission = {options.default_permission}\ndatabase_uri = {options.auth_db}\n"
        f"admin_username = {environ.get('MLFLOW_AUTH_ADMIN_USERNAME', 'admin')}\n"
    )


def start(options: argparse.Namespace) -> int:
    """Replaces this process with MLflow's server for ``options`` (`parser`); returns 2, after saying why on
    stderr, when it refuses to start. With a login, the settings file and a SQLite ``--auth-db`` are made this
    user's alone first (`_private_file`)."""
    try:
        command, env = server_command(options, os.environ)
        for path in (options.artifacts_destination, *_sqlite_files(options.backend_store_uri, options.auth_db)):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if "MLFLOW_AUTH_CONFIG_PATH" in env:
            Path(options.auth_config).parent.mkdir(parents=True, exist_ok=True)
            _private_file(options.auth_config, auth_settings(options, env))
            for path in _sqlite_files(options.auth_db):
                _private_file(path)  # empty: SQLite reads an empty file as an empty database
    except ServeError as e:
        print(f"initlab serve: {e}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def _private_file(path: str, text: str | None = None) -> None:
    """Makes the file ``path`` readable and writable by this user alone (mode 0600, whatever the umask), creating
    it empty where missing; with ``text``, its content becomes ``text`` (written after the mode is set).

    Raises:
        ServeError: the file cannot be opened for writing or its mode changed (another user's file); the
            message names it.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if text is not None else 0), 0o600)
        with open(descriptor, "w") as file:
            os.fchmod(descriptor, 0o600)  # the umask may have taken bits of a new file; an old one may be wider
            if text is not None:
                file.write(text)
    except OSError as e:
        raise ServeError(
            f"cannot make {path} readable by this user alone (mode 0600): {e.strerror}; it holds "
            "secrets of the login: use a file of this user's (see --auth-db, --auth-config)"
        ) from None


def _sqlite_files(*uris: str) -> list[str]:
    return [uri[len("sqlite:///") :] for uri in uris if uri.startswith("sqlite:///")]
