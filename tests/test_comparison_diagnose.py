"""`initlab diagnose CONFIG`: a table per scheme at initialization, and the figures."""

import itertools
import re

import pytest
import yaml

from conftest import RANDOM_NORMAL, one_error_line, write_factory_spec
from initlab.cli import main

SPEC = {
    "name": "deep-small",
    "dataset": "mnist-10k",
    "subset": {"train": 100, "val": 300},
    "model": {"sizes": [784, 64, 64, 64, 10], "activation": "tanh", "output": "softmax"},
    "schemes": ["small", "nielsen-large", "nielsen-default", "zeros"],
    "seeds": [3],
}


def write_spec(tmp_path, **changes):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return path


def tables_of(out: str) -> dict[str, list[list[str]]]:
    """The printed Markdown tables, by scheme: rows of cells (header and rule left out)."""
    tables, scheme = {}, None
    for line in out.splitlines():
        if line.startswith("## "):
            scheme = line[3:]
            tables[scheme] = []
        elif line.startswith("| ") and not line.startswith("| #"):
            tables[scheme].append([cell.strip() for cell in line.strip("|").split("|")])
    return tables


def test_diagnose_prints_every_scheme_and_writes_the_figures(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["diagnose", str(write_spec(tmp_path))]) == 0
    tables = tables_of(capsys.readouterr().out)
    assert list(tables) == SPEC["schemes"]
    assert all(len(rows) == 4 for rows in tables.values())  # 3 hidden layers and the output layer
    z_std = {scheme: [float(row[6]) for row in rows] for scheme, rows in tables.items()}
    # Tiny weights shrink the signal layer after layer (by ~sqrt(64) * 0.01 * a few); N(0, 1) weights saturate.
    assert all(later < earlier / 5 for earlier, later in itertools.pairwise(z_std["small"]))
    assert all(std > 4 for std in z_std["nielsen-large"])
    assert all(0.5 < std < 2 for std in z_std["nielsen-default"][:3])
    saturated = {scheme: float(rows[1][9]) for scheme, rows in tables.items() if scheme != "zeros"}
    assert saturated["nielsen-large"] > 0.5 and saturated["nielsen-default"] < 0.1 and saturated["small"] == 0
    assert [row[12] for row in tables["zeros"]] == ["1"] * 4  # distinct units: the symmetry is never broken
    figures = tmp_path / "diagnostics" / "deep-small"
    expected = {f"activations-{s}.png" for s in SPEC["schemes"]} | {"preact-std-by-depth.png"}
    assert {p.name for p in figures.iterdir()} == expected
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in figures.iterdir())


def test_diagnose_seed_and_out_options(tmp_path, capsys):
    spec = write_spec(tmp_path, schemes=["he"])
    assert main(["diagnose", str(spec), "--seed", "1", "--out", str(tmp_path / "a")]) == 0
    first = capsys.readouterr().out
    assert main(["diagnose", str(spec), "--seed", "1", "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.split("figures in")[0] == first.split("figures in")[0]  # same seed, same table
    assert main(["diagnose", str(spec), "--seed", "2", "--out", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out.split("figures in")[0] != first.split("figures in")[0]
    assert (tmp_path / "c" / "activations-he.png").is_file()


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"schemes": [{"name": "eye", "kernel": "identity", "bias": "zeros"}]},
            r"schemes\[0\] \(eye\): cannot predict its variance: No variance is known for initializer class 'Identity'",
        ),
        ({"schemes": ["sparce10"]}, r"schemes\[0\]: unknown scheme 'sparce10'"),
    ],
)
def test_diagnose_rejects_what_it_cannot_predict(tmp_path, capsys, changes, message):
    assert main(["diagnose", str(write_spec(tmp_path, **changes)), "--out", str(tmp_path / "out")]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_diagnose_refuses_a_name_too_long_for_a_file(tmp_path, capsys):
    scheme = {**RANDOM_NORMAL, "name": "s" * 300}  # activations-<name>.png would exceed 255 bytes
    assert main(["diagnose", str(write_spec(tmp_path, schemes=[scheme])), "--out", str(tmp_path / "out")]) == 2
    assert "schemes[0].name: must be a name of at most 100" in one_error_line(capsys.readouterr().err, "diagnose")
    assert not (tmp_path / "out").exists()


def test_diagnose_a_factory_spec(factories, capsys):
    assert main(["diagnose", str(write_factory_spec(factories)), "--out", str(factories / "figures")]) == 0
    out = capsys.readouterr().out
    for layer in ("a", "b", "out"):
        assert f"| {layer} |" in out
    assert (factories / "figures" / "activations-glorot.png").is_file()


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_diagnose_refuses_a_seed_a_spec_could_not_hold_in_one_line(tmp_path, capsys, seed):
    assert main(["diagnose", str(write_spec(tmp_path)), "--seed", seed, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert one_error_line(err, "diagnose") == (
        f"initlab diagnose: seed (--seed): must be an int between 0 and 4294967295; got {seed}"
    )
    assert not list((tmp_path / "out").glob("*.png"))
