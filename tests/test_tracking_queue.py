"""The MLflow requests made beside training (`initlab.tracking.queue`): a store that fails mid-comparison, a folder
that cannot be written or a server that dies, is reported in one line, and ``--resume`` keeps every run."""

import json
import re
import resource
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from conftest import COMMAND_ENV, COMPARE, Server, check_comparison, free_port, one_error_line, runs_of, write_spec
from initlab.cli import main

pytestmark = pytest.mark.integration  # comparisons in processes of their own, a server


def test_a_store_that_cannot_be_written_fails_in_one_line_and_resume_finishes(tmp_path, store):
    uri = store()
    spec = write_spec(tmp_path, seeds=[0], epochs=1)
    assert main(["compare", str(spec), "--tracking-uri", uri]) == 0  # the store exists
    spec = write_spec(tmp_path, seeds=[0], epochs=2)

    # like a full disk: no file grows past 256 KiB (EFBIG instead of ENOSPC); the store is larger
    def no_file_may_grow():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, resource.RLIM_INFINITY))

    full = subprocess.run(
        COMPARE + [str(spec), "--tracking-uri", uri],
        env=COMMAND_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=no_file_may_grow,
    )
    assert full.returncode == 1, full.stdout + full.stderr
    assert "stopped working" in one_error_line(full.stderr) and "rerun with --resume" in full.stderr
    assert main(["compare", str(spec), "--tracking-uri", uri, "--resume"]) == 0  # here, without the limit
    # What the full store could not mark is repaired: nothing RUNNING, each run of the new spec once.
    parents, children = runs_of(MlflowClient(uri), "tiny")
    assert not [c for c in children if c.info.status == "RUNNING"]
    finished = [c for c in children if c.info.status == "FINISHED" and c.data.params["epochs"] == "2"]
    assert sorted(c.data.tags["initlab.run_key"] for c in finished) == [
        "nielsen-default/seed=0",
        "nielsen-large/seed=0",
    ]


def test_a_comparison_on_a_server_that_dies_is_reported_quickly_and_resume_keeps_every_run_there(tmp_path, monkeypatch):
    server = Server(tmp_path, free_port()).start()
    try:
        spec = write_spec(tmp_path, epochs=30, subset={"train": 1000, "val": 200})
        env = {**COMMAND_ENV, "MLFLOW_TRACKING_URI": server.uri, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        first = subprocess.Popen(
            COMPARE + [str(spec), "--no-stack"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        client = MlflowClient(server.uri)
        progress = []
        for line in first.stderr:  # kill the server while later runs train (one progress line per epoch; two lanes)
            progress.append(line)
            if re.match(r"\[[12]/4 runs done\]", line) and "epoch 5/30" in line:
                break
        assert progress and "epoch 5/30" in progress[-1], "".join(progress)
        # Runs are written by a thread of their own while the next ones train: kill once one is in MLflow.
        deadline = time.time() + 120
        experiment = client.get_experiment_by_name("tiny").experiment_id
        in_mlflow: set[str] = set()
        while not in_mlflow:
            assert time.time() < deadline, "no run ever reached MLflow"
            time.sleep(0.2)
            in_mlflow = {
                r.data.tags["initlab.run_key"]
                for r in client.search_runs([experiment], "tags.`initlab.run_key` != ''")
                if r.info.status == "FINISHED"
            }
        server.stop(signal.SIGKILL)
        killed = time.time()
        _, rest = first.communicate(timeout=300)
        stderr = "".join(progress) + rest
        assert first.returncode == 1
        line = one_error_line(stderr)
        assert f"the MLflow store {server.uri} stopped working" in line and "rerun with --resume" in line
        # Training the run in flight goes on without the server (and, while the writer's requests fail, perhaps
        # the next one); every run that finished is a complete record; the report takes seconds, not minutes.
        records = list((tmp_path / "cache" / "keras-initlab" / "pending").glob("*/*/*/run.json"))
        saved = [json.loads(r.read_text()) for r in records]
        assert [r["status"] for r in saved] == ["FINISHED"] * len(records) and 1 <= len(records) <= 3, saved
        assert not in_mlflow & {r["run_key"] for r in saved}  # the runs in MLflow before the kill are not pending
        assert all((r.parent / "artifacts" / "model" / "model.keras").is_file() for r in records)
        print(f"reported {time.time() - killed:.1f} s after the kill, {len(records)} finished run(s) kept on disk")
        assert time.time() - killed < 120

        server.start()  # the same store, back
        for key in ("MLFLOW_TRACKING_URI", "XDG_CACHE_HOME"):  # resumed from this process, TensorFlow loaded already
            monkeypatch.setenv(key, env[key])
        monkeypatch.chdir(tmp_path)
        assert main(["compare", str(spec), "--no-stack", "--resume"]) == 0
        check_comparison(client, "tiny", epochs=30)  # every (scheme, seed) once, FINISHED, with its whole history
        assert not any(r.exists() for r in records)  # the pending records were written to MLflow and removed
        assert not (tmp_path / "tracking").exists()  # nothing went to the local default store
    finally:
        server.stop()
