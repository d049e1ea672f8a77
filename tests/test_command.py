"""The `initlab` command as a user runs it: its own lines only, a live progress line on a terminal, and a new
SQLite store made on the idle core while TensorFlow loads (`keras_initlab_cli`)."""

import io
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from keras_initlab.comparison import run_comparison
from keras_initlab.tracking import ComparisonTracker
from keras_initlab_cli import _CPP_LOG_LINE, PREPARED_STORE_VARIABLE, _create_store_beside
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


def test_a_new_store_is_made_beside_and_adopted(tmp_path, monkeypatch):
    database = tmp_path / "s.db"
    monkeypatch.delenv(PREPARED_STORE_VARIABLE, raising=False)
    process, made = _create_store_beside(["compare", "spec.yaml", "--tracking-uri", f"sqlite:///{database}"])
    assert os.environ[PREPARED_STORE_VARIABLE] == made and Path(made).parent == tmp_path
    assert process.wait(timeout=120) == 0 and not database.exists()
    with sqlite3.connect(made) as db:  # an MLflow store, its schema migrated
        assert db.execute("select count(*) from alembic_version").fetchone() == (1,)
    made_inode = os.stat(made).st_ino
    tracker = ComparisonTracker(f"sqlite:///{database}", "adopted", spec_hash="x")
    assert os.stat(database).st_ino == made_inode and not Path(made).exists()  # renamed into place, not made again
    assert tracker.client.get_experiment(tracker.experiment_id).name == "adopted"
    assert PREPARED_STORE_VARIABLE not in os.environ
    # Nothing to make: an existing store, another store kind, another command.
    assert _create_store_beside(["compare", "spec.yaml", "--tracking-uri", f"sqlite:///{database}"]) is None
    assert _create_store_beside(["compare", "spec.yaml", "--tracking-uri", "http://127.0.0.1:1"]) is None
    assert _create_store_beside(["diagnose", "spec.yaml"]) is None


def test_a_refused_spec_leaves_no_store(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"name": "bad", "schemes": ["no-such-scheme"]}))
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([str(INITLAB), "compare", str(spec)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "no-such-scheme" in done.stderr, done.stderr
    assert sorted(p.name for p in (tmp_path / "tracking").iterdir()) == ["mlflow.lock"]  # no store, made or half-made

