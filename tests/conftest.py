"""A real MLflow tracking server for the tests, started through the project's own ``initlab serve``."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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
        self.command = [str(Path(sys.executable).with_name("initlab")), "serve", "--port", str(port),
                        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                        "--artifacts-destination", str(folder / "server-artifacts"),
                        "--auth-db", f"sqlite:///{folder / 'auth.db'}", "--auth-config", str(folder / "basic_auth.ini")]
        self.env = {**os.environ, **env}
        self.process = None

    def start(self) -> "Server":
        log = open(self.folder / "server.log", "a")
        self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
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


@pytest.fixture
def mlflow_server(tmp_path):
    server = Server(tmp_path, free_port()).start()
    yield server.uri
    server.stop()
