"""keras-initlab as a user gets it from ``pip install``: the sdist and the wheel built from it hold the library
(``keras_initlab``, with the bundled MNIST sample) and the application (``initlab``, with the built-in specs and
their example factory); the wheel, installed (not editable) into a
fresh environment, runs the main job and the diagnostics from an empty folder.

The fresh environment reuses this one's installed dependencies (a ``.pth`` line naming its site-packages:
no download, seconds to make); its own ``keras_initlab`` and ``initlab`` are the wheel's (this environment's editable
install is a ``.pth`` *file* in that folder, which Python runs only for a site folder, not for one added
by a ``.pth`` line)."""

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # builds and installs the package

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "keras_initlab", "initlab")
SPECS = {"all-schemes", "all-schemes-relu", "cnn-adam", "deep-relu", "deep-relu-adam", "deep-tanh", "nielsen"}


def run(command: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sdist, made from a clean copy of the checkout's sources (no build/ or egg-info of an earlier build), and
    the wheel made from that sdist (so the sdist is shown to be complete)."""
    folder = tmp_path_factory.mktemp("build")
    source, out = folder / "source", folder / "dist"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    out.mkdir()
    if importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel"):
        isolation = ["--no-build-isolation"]  # this environment's setuptools: no download
    else:
        isolation = []  # (a Python without setuptools in its environments) pip fetches them
    run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
            str(out),
        ],
        cwd=source,
    )
    (sdist,) = out.glob("*.tar.gz")  # keras-initlab- or keras_initlab-, by setuptools version
    with tarfile.open(sdist) as archive:
        archive.extractall(folder / "unpacked", filter="data")
    (unpacked,) = (folder / "unpacked").iterdir()
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--wheel-dir", str(out), str(unpacked)],
        cwd=folder,
    )
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_the_wheel_and_the_sdist_hold_the_library_the_application_specs_factory_and_data(built):
    wheel = zipfile.ZipFile(built["wheel"]).namelist()
    packages = {name for name in wheel if name.startswith(("keras_initlab/", "initlab/"))}
    assert {f"initlab/examples/specs/{name}.yaml" for name in SPECS} <= packages
    assert "initlab/examples/models/small_cnn.py" in packages
    assert {
        "keras_initlab/data_files/t10k-images-idx3-ubyte.gz",
        "keras_initlab/data_files/t10k-labels-idx1-ubyte.gz",
        "initlab/server.py",
        "initlab/tracking/process.py",
        "keras_initlab/training/stacked.py",
        "keras_initlab/py.typed",  # PEP 561: users' type checkers read the annotations
        "initlab/py.typed",
    } <= packages, sorted(packages)
    (entry_points,) = [name for name in wheel if name.endswith(".dist-info/entry_points.txt")]
    assert "initlab = initlab.console:main" in zipfile.ZipFile(built["wheel"]).read(entry_points).decode()
    assert not [name for name in wheel if name.startswith(("tests/", "scripts/"))]
    assert {name.split("/")[0] for name in wheel if "/" in name and ".dist-info/" not in name} == {
        "keras_initlab",
        "initlab",
    }
    with tarfile.open(built["sdist"]) as archive:
        sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert packages == {
        name for name in sdist if name.startswith(("keras_initlab/", "initlab/")) and "." in name.rsplit("/", 1)[1]
    }


def test_the_installed_wheel_runs_the_main_job_and_the_diagnostics_from_an_empty_folder(built, tmp_path):
    fresh = tmp_path / "env"
    run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], cwd=tmp_path)
    site = Path(
        run(
            [str(fresh / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=tmp_path,
        ).strip()
    )
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # this environment's packages
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    python = str(fresh / "bin" / "python")
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            "--no-compile",
            str(built["wheel"]),
        ],
        cwd=tmp_path,
        env=env,
    )
    for package in ("keras_initlab", "initlab"):
        origin = run(
            [python, "-c", f"import importlib.util as u; print(u.find_spec('{package}').origin)"], cwd=tmp_path, env=env
        )
        assert Path(origin.strip()).is_relative_to(site), origin  # the wheel's copy, not this checkout's

    empty = tmp_path / "empty"
    empty.mkdir()
    initlab = str(fresh / "bin" / "initlab")
    out = run([initlab, "compare", "nielsen", "--epochs", "1"], cwd=empty, env=env)
    assert "| nielsen-default | 3 |" in out and "| nielsen-large | 3 |" in out, out
    assert (empty / "tracking" / "mlflow.db").is_file()
    out = run([initlab, "diagnose", "nielsen"], cwd=empty, env=env)
    assert "## nielsen-default" in out and (empty / "diagnostics" / "nielsen" / "preact-std-by-depth.png").is_file(), (
        out
    )
    refused = subprocess.run(
        [initlab, "serve", "--host", "0.0.0.0"], cwd=empty, env=env, capture_output=True, text=True, timeout=60
    )  # the server's module, found in the installed package
    assert refused.returncode == 2 and "needs a login" in refused.stderr, refused.stderr
