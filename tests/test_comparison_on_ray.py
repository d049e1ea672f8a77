"""A comparison's runs as Ray tasks (`initlab.comparison.on_ray`), with a real Ray head node on 127.0.0.1: Ctrl-C
kills the runs in flight, ``--resume`` finishes them with a killed worker's unit retried, and the runs are those made
here. (A local instance, ``--ray`` alone: `tests/test_cluster.py`.)"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import RAY_ENV, ray_env
from initlab.cluster import LOOPBACK_VARIABLE

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ray")]  # Ray; one worker scans /proc for its units


class EpochWatch:
    """A progress stream that remembers the lines and tells when the first epoch is reported."""

    def __init__(self):
        self.lines, self.first_epoch = [], threading.Event()

    def write(self, text):
        self.lines.append(text)
        if "epoch 1/" in text:
            self.first_epoch.set()

    def flush(self):
        pass


def unit_workers() -> list[int]:
    """PIDs of the Ray workers running a unit of work now (Ray names them ``ray::train_unit``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and b"ray::train_unit" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def children_of(outcome) -> dict:
    """``{run key: (status, params, {metric: values by step})}`` of a comparison's child runs."""
    from mlflow.tracking import MlflowClient

    from conftest import runs_of

    client = MlflowClient(outcome.tracking_uri)
    (parent,), runs = runs_of(client, "tiny")
    assert parent.info.status == "FINISHED"
    return {
        run.data.tags["initlab.run_key"]: (
            run.info.status,
            run.data.params,
            {
                key: [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
                for key in ("val_loss", "val_accuracy", "train_loss")
            },
        )
        for run in runs
    }


def test_ctrl_c_then_resume_with_a_killed_worker_gives_each_run_once_as_it_is_made_here(
    ray_head_node, tmp_path, monkeypatch, store
):
    """A comparison on a head node, as a user runs it: Ctrl-C kills the runs in flight (KILLED with the epochs they
    finished, none half-written). ``--resume`` (from this process) with a worker killed mid-unit: Ray runs that unit
    again, and in the end each run is written once, whole, with the params and curves the same comparison gives here.
    Its workers inherit the loopback setting."""
    from mlflow.tracking import MlflowClient

    from conftest import runs_of, write_spec
    from initlab.comparison import run_comparison

    port, _ = ray_head_node
    spec = write_spec(tmp_path, seeds=[0], epochs=60, subset={"train": 2000, "val": 200})  # one unit of work
    uri = store("ray.db")
    command = [
        str(Path(sys.executable).with_name("initlab")),
        "compare",
        str(spec),
        "--tracking-uri",
        uri,
        "--ray",
        f"127.0.0.1:{port}",
    ]
    driver = subprocess.Popen(
        command, env=RAY_ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in driver.stderr:
        if "epoch 1/60" in line:
            break
    driver.send_signal(signal.SIGINT)  # Ctrl-C, to the driver, while the unit has ~59 epochs to go
    _, rest = driver.communicate(timeout=120)
    assert driver.returncode != 0, rest
    client = MlflowClient(uri)
    (parent,), children = runs_of(client, "tiny")
    assert parent.info.status == "KILLED", rest
    epochs = {run.info.status: [] for run in children}
    for run in children:
        epochs[run.info.status].append(len(client.get_metric_history(run.info.run_id, "val_accuracy")))
    assert set(epochs) <= {"KILLED", "FINISHED"} and set(epochs.get("FINISHED", [])) <= {60}, (
        epochs
    )  # none half-written
    assert max(epochs.get("KILLED", [0])) >= 1, epochs  # the unit in flight was stopped, its epochs kept by its worker

    ray_env(monkeypatch)  # resumed from this process, which has TensorFlow loaded already
    watch, seen = EpochWatch(), {}

    def kill_a_worker_after_the_first_epoch():
        watch.first_epoch.wait(timeout=300)
        pid = unit_workers()[0]
        seen["environ"] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker_after_the_first_epoch)
    killer.start()
    on_ray = run_comparison(spec, tracking_uri=uri, ray=f"127.0.0.1:{port}", resume=True, progress=watch)
    killer.join()
    assert f"{LOOPBACK_VARIABLE}=0".encode() in seen["environ"]
    assert not on_ray.failures  # the killed unit was run again: Ray's retry
    assert len(on_ray.skipped) == len(epochs.get("FINISHED", []))  # what finished before Ctrl-C was kept
    here = run_comparison(spec, tracking_uri=store("here.db"))
    runs = {"here": children_of(here), "ray": children_of(on_ray)}
    assert (
        sorted(runs["ray"])
        == sorted(runs["here"])
        == sorted(f"{scheme}/seed=0" for scheme in ("nielsen-default", "nielsen-large"))
    )  # each once
    for key, (status, params, curves) in runs["here"].items():
        ray_status, ray_params, ray_curves = runs["ray"][key]
        assert status == ray_status == "FINISHED" and ray_params == params
        for metric, values in curves.items():
            assert len(ray_curves[metric]) == 60  # whole: every epoch once
            assert ray_curves[metric] == pytest.approx(values, rel=1e-5), (key, metric)
    assert on_ray.summary == here.summary
