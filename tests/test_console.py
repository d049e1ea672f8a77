"""The `initlab` console script as a user runs it (`initlab.console`): its own lines only, MLflow only in its
tracking process, nothing left behind by a refused spec, and no TensorFlow for what trains nothing."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import write_spec
from initlab.console import _CPP_LOG_LINE

pytestmark = pytest.mark.integration  # each test runs the command in a process of its own

INITLAB = Path(sys.executable).parent / "initlab"  # the console script, as a user runs it


def test_the_command_prints_its_own_lines_only_and_imports_mlflow_only_in_its_tracking_process(tmp_path):
    spec = write_spec(tmp_path, seeds=[0], epochs=1)
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    # The console script's command (`initlab.console._command`: all but the exit), then what this process imported.
    code = (
        "import os, sys; from initlab import console; "
        "status = console._command(['compare', sys.argv[1], '--tracking-uri', sys.argv[2]]); "
        "print(status, 'mlflow' in sys.modules, flush=True); os._exit(0)"
    )
    quiet = subprocess.run(
        [sys.executable, "-c", code, str(spec), f"sqlite:///{tmp_path / 's.db'}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert quiet.stdout.splitlines()[-1] == "0 False", quiet.stdout + quiet.stderr
    # TensorFlow's start-up lines hidden; piped, the progress is one line per epoch, and nothing else reaches stderr.
    assert quiet.stderr.splitlines() == [
        "[0/2 runs done] nielsen-default/seed=0, nielsen-large/seed=0: epoch 1/1  "
        + re.search(r"\(nielsen-large/seed=0: val_accuracy \d\.\d{4}\)", quiet.stderr).group()
    ], quiet.stderr
    assert "| nielsen-default | 1 |" in quiet.stdout and "look: mlflow ui" in quiet.stdout
    runs = MlflowClient(f"sqlite:///{tmp_path / 's.db'}").search_runs(["1"])
    assert sorted(run.info.status for run in runs) == ["FINISHED"] * 3  # the parent and its 2 runs


def test_a_refused_spec_leaves_no_store_and_tensorflow_lines_show_when_asked_for(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"name": "bad", "schemes": ["no-such-scheme"]}))
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # the user's own setting: TensorFlow's lines, as they asked
    done = subprocess.run(
        [str(INITLAB), "compare", str(spec)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "initlab compare: schemes[0]: unknown scheme 'no-such-scheme'" in done.stderr
    assert [line for line in done.stderr.splitlines() if _CPP_LOG_LINE.match(line)], done.stderr
    # No store, made or half-made, and not the folder or the lock file its tracking process made for it.
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yaml"]


def test_what_trains_nothing_runs_where_tensorflow_and_keras_cannot_be_imported(tmp_path):
    # A process in which `import tensorflow` (and keras) fails: modules of those names that raise, first on the path.
    blocked = tmp_path / "blocked"
    for name in ("tensorflow", "keras"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    env = {**os.environ, "PYTHONPATH": str(blocked)}

    def initlab(*argv):
        return subprocess.run([str(INITLAB), *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    listed = initlab("list")
    assert listed.returncode == 0 and "  nielsen " in listed.stdout and "  he " in listed.stdout, listed.stderr
    assert "ScaledGaussian" in listed.stdout
    spec = initlab("spec", "nielsen")
    assert spec.returncode == 0 and spec.stdout.startswith("#") and "nielsen-default" in spec.stdout, spec.stderr
    with open("/dev/full", "w") as full:  # output that cannot be written: exit 120, one line
        done = subprocess.run(
            [str(INITLAB), "list"], env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120
        )
    assert done.returncode == 120 and done.stderr == "initlab list: cannot write the output (No space left on device)\n"
    read, write = os.pipe()
    os.close(read)  # a reader that went away (| head): quietly, as any Unix tool
    done = subprocess.run(
        [str(INITLAB), "spec", "nielsen"], env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120
    )
    os.close(write)
    assert done.returncode == 141 and done.stderr == ""
    refused = initlab("serve", "--host", "0.0.0.0")  # the server's rules, decided before MLflow's server starts
    assert refused.returncode == 2 and "needs a login" in refused.stderr, refused.stderr
    # The tracking process, started as the command starts it, makes the store and answers requests.
    uri = f"sqlite:///{tmp_path / 's.db'}"
    code = (
        "import sys; from initlab.tracking.process import RemoteTracker, start_tracking_process, "
        "take_tracking_process; process = start_tracking_process(sys.argv[1]); "
        "tracker = RemoteTracker(*take_tracking_process(), sys.argv[1], 'blocked', 'x'); "
        "tracker.start_parent({}, resume=False); tracker.close(); print(process.process.wait(timeout=60))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, uri], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "0", done.stdout + done.stderr
    assert len(MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("blocked").experiment_id])) == 1


def test_a_killed_commands_tracking_process_removes_the_new_store_it_was_making(tmp_path):
    """A command killed (SIGKILL) while TensorFlow loads: its tracking process, which was making the new store, removes
    it and ends quietly (it used to leave ``.<store>.<pid>.new`` for the next start to find)."""
    command = [
        str(INITLAB),
        "compare",
        str(write_spec(tmp_path, epochs=1)),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'b.db'}",
    ]
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # the arguments parsed, the tracking process started, TensorFlow loading (5-10 s here)
    killed.kill()
    _, err = killed.communicate(timeout=120)  # until the tracking process, which shares the pipes, ends
    assert "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir() if ".db" in p.name] == []  # no store, no .b.db.<pid>.new left


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_tensorflow_loads_is_held_until_it_has_loaded(monkeypatch, capsys, signum):
    """Ctrl-C or SIGTERM while the library loads is held until it has loaded (raised inside TensorFlow's import it
    left half-imported modules and a traceback, or was lost in a garbage-collection callback); then the command ends
    in one line (`_command`), and from then on SIGTERM raises `Terminated` as Ctrl-C raises KeyboardInterrupt."""
    from initlab import console
    from initlab.comparison.progress import Terminated

    loaded = []

    def loading():  # the signal lands in the middle of the import
        os.kill(os.getpid(), signum)
        time.sleep(0.05)
        loaded.append(True)

    monkeypatch.setattr(console, "_import_library", loading)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert console._command(["diagnose", "nielsen"]) == 128 + signum and loaded == [True]  # then nothing runs
        said = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted (Ctrl-C)"
        assert capsys.readouterr().err == f"initlab diagnose: {said} before anything ran\n"
        assert signal.getsignal(signal.SIGINT) == before[signal.SIGINT]
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGTERM, before[signal.SIGTERM])
