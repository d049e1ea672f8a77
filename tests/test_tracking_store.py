"""The tracking store (`initlab.tracking.store`): the default store, problems reported in one line before any work,
a server that does not answer, two comparisons starting on a new store at once."""

import fcntl
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import COMMAND_ENV, COMPARE, free_port, one_error_line, runs_of, write_spec
from initlab.cli import main
from initlab.tracking.store import store_lock


def test_default_store_is_tracking_sqlite_in_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = write_spec(tmp_path, schemes=["he"], seeds=[0], epochs=3)
    assert main(["compare", str(spec), "--experiment", "renamed", "--epochs", "1"]) == 0
    db = tmp_path / "tracking" / "mlflow.db"
    assert db.is_file()
    client = MlflowClient(f"sqlite:///{db}")
    parents, children = runs_of(client, "renamed")
    assert len(parents) == 1 and len(children) == 1
    # What ran (the override applied) is spec.json; the file as written is kept beside it.
    ran = json.loads(Path(client.download_artifacts(parents[0].info.run_id, "spec.json")).read_text())
    written = yaml.safe_load(Path(client.download_artifacts(parents[0].info.run_id, "original-spec.yaml")).read_text())
    assert (ran["epochs"], written["epochs"]) == (1, 3)
    assert len(client.get_metric_history(children[0].info.run_id, "val_accuracy")) == 1
    assert f"mlflow ui --backend-store-uri sqlite:///{db}" in capsys.readouterr().out


def test_unreachable_server_is_reported_before_training_with_the_advice_for_where_its_uri_came_from(
    tmp_path, capsys, monkeypatch
):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.time()
    assert main(["compare", str(write_spec(tmp_path)), "--tracking-uri", uri]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"MLflow tracking server {uri} is unreachable" in line and "or leave out --tracking-uri to use" in line
    assert time.time() - start < 30
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["compare", str(write_spec(tmp_path))]) == 2
    assert "or unset MLFLOW_TRACKING_URI to use" in one_error_line(capsys.readouterr().err)


def test_a_uri_with_a_login_is_refused_naming_the_variables_and_never_shows_the_password(tmp_path, capsys):
    uri = f"http://admin:s3cret-pw@127.0.0.1:{free_port()}/"
    assert main(["compare", str(write_spec(tmp_path)), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert "s3cret-pw" not in err and "http://admin:***@" in line
    assert (
        f"pass http://127.0.0.1:{uri.split(':')[-1]} and set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        in line
    )


def test_store_problems_are_one_line_errors(tmp_path, capsys, monkeypatch):
    spec = str(write_spec(tmp_path, epochs=1))
    assert main(["compare", spec, "--tracking-uri", "sqlite:///"]) == 2
    assert "the MLflow store sqlite:/// names no database file" in one_error_line(capsys.readouterr().err)
    assert main(["compare", spec, "--tracking-uri", "foo://x"]) == 2
    assert "cannot use the MLflow store foo://x" in one_error_line(capsys.readouterr().err)
    assert main(["compare", spec, "--tracking-uri", "sqlite:////proc/no-such-folder/mlflow.db"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "cannot use the MLflow store sqlite:////proc/no-such-folder/mlflow.db" in line and "writable folder" in line
    (tmp_path / "folder.db").mkdir()  # a folder where the database goes: refused now, not after training
    assert main(["compare", spec, "--tracking-uri", f"sqlite:///{tmp_path / 'folder.db'}"]) == 2
    assert f"{tmp_path / 'folder.db'} is a folder" in one_error_line(capsys.readouterr().err)
    (tmp_path / "notes.db").write_text("a text file, not a store")
    assert main(["compare", spec, "--tracking-uri", f"sqlite:///{tmp_path / 'notes.db'}"]) == 2
    assert f"{tmp_path / 'notes.db'} is not a SQLite database" in one_error_line(capsys.readouterr().err)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tracking").write_text("not a folder")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["compare", spec]) == 2
    assert f"{tmp_path / 'tracking'} is a file, not a folder" in one_error_line(capsys.readouterr().err)


def test_a_lock_file_removed_while_waited_on_is_opened_again(tmp_path):
    """A command refused before its store existed removes the lock file it made, holding the lock; a comparison that
    waited on that file must then lock the file at the path, not the removed one (else two would hold "the" lock)."""
    path = tmp_path / "s.lock"
    refused = open(path, "a")
    fcntl.flock(refused, fcntl.LOCK_EX)
    inside, leave, held_elsewhere = threading.Event(), threading.Event(), []

    def comparison():
        with store_lock(f"sqlite:///{tmp_path / 's.db'}"):
            inside.set()
            leave.wait(30)

    waiting = threading.Thread(target=comparison)
    waiting.start()
    deadline = time.time() + 30
    while sum(os.path.realpath(f"/proc/self/fd/{fd}") == str(path) for fd in os.listdir("/proc/self/fd")) < 2:
        assert time.time() < deadline  # until the comparison has the file open and waits for its lock
        time.sleep(0.01)
    path.unlink()
    fcntl.flock(refused, fcntl.LOCK_UN)
    refused.close()
    assert inside.wait(30)
    with open(path, "a") as another:  # a third comparison: the lock of the file at the path is held
        try:
            fcntl.flock(another, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held_elsewhere.append(False)
        except BlockingIOError:
            held_elsewhere.append(True)
    leave.set()
    waiting.join(30)
    assert held_elsewhere == [True]


@pytest.mark.integration
def test_two_comparisons_start_on_a_new_store_at_once(tmp_path):
    """One comparison in a process of its own (``initlab compare``, whose tracking process opens the store at once)
    and one in this process (TensorFlow loaded: it reaches the store in a second), started together on a store that
    does not exist yet: one makes it (MLflow's migrations), the other waits for it; both finish."""
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    spec = write_spec(tmp_path, seeds=[0], epochs=1)
    other = subprocess.Popen(
        COMPARE + [str(spec), "--tracking-uri", uri],
        env=COMMAND_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 60
    while not (tmp_path / "new.lock").exists():  # the other comparison is opening the store
        assert other.poll() is None and time.time() < deadline, other.communicate()[0]
        time.sleep(0.05)
    here = main(["compare", str(spec), "--tracking-uri", uri])
    output = other.communicate(timeout=300)[0]
    assert [other.returncode, here] == [0, 0], output
    parents, children = runs_of(MlflowClient(uri), "tiny")
    assert len(parents) == 2 and len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
