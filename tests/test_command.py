"""The `initlab` command as a user runs it: its own lines only, a live progress line on a terminal, and its
MLflow writer process, started on the idle core while TensorFlow loads (`keras_initlab_cli`)."""

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from keras_initlab.comparison import run_comparison
from keras_initlab.tracking import (
    PARENT_TAG, ChildRun, RemoteTracker, TrackingLostError, TrackingUnavailableError, TrackingWriter,
)
from keras_initlab_cli import (
    _CPP_LOG_LINE, PREPARED_STORE_VARIABLE, _lock_new_store, _start_writer, take_writer_process,
)
from test_compare import write_spec

INITLAB = Path(sys.executable).parent / "initlab"  # the console script, as a user runs it


def compare(tmp_path, **env_changes):
    spec = write_spec(tmp_path, seeds=[0], epochs=1)
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(env_changes)
    done = subprocess.run([str(INITLAB), "compare", str(spec), "--tracking-uri", f"sqlite:///{tmp_path / 's.db'}"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_tensorflow_start_up_lines_are_hidden_unless_asked_for(tmp_path):
    quiet = compare(tmp_path)
    assert not [line for line in quiet.stderr.splitlines() if _CPP_LOG_LINE.match(line)], quiet.stderr
    # Piped, the progress is one line per epoch, and nothing else reaches stderr.
    assert quiet.stderr.splitlines() == [
        "[0/2 runs done] nielsen-default/seed=0, nielsen-large/seed=0: epoch 1/1  "
        + re.search(r"\(nielsen-large/seed=0: val_accuracy \d\.\d{4}\)", quiet.stderr).group()
    ], quiet.stderr
    assert "| nielsen-default | 1 |" in quiet.stdout and "look: mlflow ui" in quiet.stdout

    asked = compare(tmp_path, TF_CPP_MIN_LOG_LEVEL="0")  # the user's own setting: TensorFlow's lines, as they asked
    assert [line for line in asked.stderr.splitlines() if _CPP_LOG_LINE.match(line)], asked.stderr


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_progress_is_one_live_line_with_a_bar_and_eta(tmp_path):
    terminal = Terminal()
    spec = write_spec(tmp_path, seeds=[0, 1], epochs=2)
    run_comparison(spec, tracking_uri=f"sqlite:///{tmp_path / 's.db'}", progress=terminal, stack=False)
    text = terminal.getvalue()
    assert "\n" not in text[:-1] and text.endswith("\n")  # one line, rewritten in place
    updates = text.split("\r")[1:]
    assert len(updates) == 4 * 2 + 1  # every epoch of each of the 4 runs (one by one), then the total
    bars = [re.match(r"\[(#*)(\.*)\] (\d)/4 runs  ETA \d+:\d\d  epoch (\d)/2", u) for u in updates[:-1]]
    assert all(bars), updates
    filled = [len(b.group(1)) for b in bars]
    assert filled == sorted(filled) and filled[-1] == len(bars[-1].group(1) + bars[-1].group(2))  # full at the end
    assert [b.group(3) for b in bars] == ["0", "0", "1", "1", "2", "2", "3", "3"]
    assert re.fullmatch(r"4/4 runs trained in \d+:\d\d\x1b\[K\n", updates[-1]), updates[-1]


def writer_process(uri: str, command: str = "compare"):
    """The writer process that ``initlab compare --tracking-uri uri`` starts, and its connections."""
    started = _start_writer([command, "spec.yaml", "--tracking-uri", uri])
    return started, take_writer_process()


def test_the_writer_process_makes_a_new_store_that_the_comparison_adopts(tmp_path):
    database = tmp_path / "s.db"
    uri = f"sqlite:///{database}"
    (process, made), connections = writer_process(uri)
    assert Path(made).parent == tmp_path and not database.exists() and PREPARED_STORE_VARIABLE not in os.environ
    assert take_writer_process() is None  # the connections go to one comparison
    tracker = RemoteTracker(*connections, uri, "adopted", spec_hash="x")
    assert database.exists() and not Path(made).exists()  # made there, renamed into place
    with sqlite3.connect(database) as db:  # an MLflow store, its schema migrated
        assert db.execute("select count(*) from alembic_version").fetchone() == (1,)
    assert MlflowClient(uri).get_experiment(tracker.experiment_id).name == "adopted"
    assert "tensorflow" not in Path(f"/proc/{process.pid}/maps").read_text()  # MLflow alone, no TensorFlow
    tracker.close()
    assert process.wait(timeout=60) == 0  # its requests ended: it ends
    # Nothing to make: an existing store, another store kind; no writer for another command.
    assert _lock_new_store(["compare", "spec.yaml", "--tracking-uri", uri]) == (None, None)
    assert _lock_new_store(["compare", "spec.yaml", "--tracking-uri", "http://127.0.0.1:1"]) == (None, None)
    assert writer_process(uri, command="diagnose") == (None, None)


def test_requests_made_in_the_writer_process_write_the_runs_and_return_its_errors(tmp_path):
    uri = f"sqlite:///{tmp_path / 's.db'}"
    (process, _), connections = writer_process(uri)
    tracker = RemoteTracker(*connections, uri, "remote", spec_hash="x")
    assert tracker.start_parent({"epochs": 1}, resume=False, run_name="parent") == {}
    assert tracker.parent_id is not None  # known here as well
    child = ChildRun("he/seed=0", {"scheme": "he"})
    child.add_epoch(1, {"val_accuracy": 0.5})
    child.finish(None)
    run = MlflowClient(uri).get_run(tracker.write_record(tracker.stage(child)))  # staged here, written there
    assert run.data.params == {"scheme": "he"} and run.data.metrics["final_val_accuracy"] == 0.5
    assert run.data.tags[PARENT_TAG] == tracker.parent_id and not tracker.pending_dir.exists()
    tracker.close()
    process.wait(timeout=60)
    # A store error there is the same error here.
    MlflowClient(uri).delete_experiment(tracker.experiment_id)
    (process, _), connections = writer_process(uri)
    with pytest.raises(TrackingUnavailableError, match="experiment 'remote' .* is deleted"):
        RemoteTracker(*connections, uri, "remote", spec_hash="x")
    process.kill()


def test_a_writer_process_that_dies_is_a_lost_store_and_the_finished_runs_stay_on_disk(tmp_path):
    uri = f"sqlite:///{tmp_path / 's.db'}"
    process, _ = _start_writer(["compare", "spec.yaml", "--tracking-uri", uri])
    writer = TrackingWriter(uri, "lost", spec_hash="x")  # takes the writer process
    parent = writer.submit(lambda tracker: tracker.start_parent({}, resume=False)).result()
    assert parent == {} and isinstance(writer.wait(), RemoteTracker)
    process.kill()
    process.wait()
    child = ChildRun("he/seed=0", {"scheme": "he"})
    child.add_epoch(1, {"val_accuracy": 0.5})
    child.finish(None)
    writer.write([child])
    with pytest.raises(TrackingLostError, match=r"stopped working \(ConnectionError: the MLflow writer process ended"):
        writer.wait()
    writer.close()
    (record,) = writer.tracker.pending_dir.iterdir()
    assert json.loads((record / "run.json").read_text())["run_key"] == "he/seed=0"  # for --resume to write
    # Dead before the store is opened: the store cannot be used, and says why.
    process, _ = _start_writer(["compare", "spec.yaml", "--tracking-uri", uri])
    process.kill()
    process.wait()
    writer = TrackingWriter(uri, "lost", spec_hash="x")
    with pytest.raises(TrackingUnavailableError, match=f"cannot use the MLflow store {uri}: the MLflow writer process"):
        writer.wait()
    writer.close()


def test_the_command_imports_mlflow_only_in_its_writer_process(tmp_path):
    spec = write_spec(tmp_path, seeds=[0], epochs=1)
    code = ("import sys, keras_initlab_cli as command; "
            "sys.argv = ['initlab', 'compare', sys.argv[1], '--tracking-uri', sys.argv[2]]; "
            "print(command._command(), 'mlflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(spec), f"sqlite:///{tmp_path / 's.db'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines()[-1] == "0 False", done.stdout + done.stderr
    runs = MlflowClient(f"sqlite:///{tmp_path / 's.db'}").search_runs(["1"])
    assert sorted(run.info.status for run in runs) == ["FINISHED"] * 3  # the parent and its 2 runs


def test_a_refused_spec_leaves_no_store(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"name": "bad", "schemes": ["no-such-scheme"]}))
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([str(INITLAB), "compare", str(spec)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "no-such-scheme" in done.stderr, done.stderr
    assert sorted(p.name for p in (tmp_path / "tracking").iterdir()) == ["mlflow.lock"]  # no store, made or half-made

