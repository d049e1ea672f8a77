"""The built-in specs: shipped in the package, addressed by name (`keras_initlab.spec.spec_path`), listed
(``initlab list``) and printed as a starting point (``initlab spec NAME``)."""

import dataclasses

import pytest

from keras_initlab.cli import main
from keras_initlab.spec import BUILTIN_SPECS, ComparisonSpec, SpecError, builtin_spec_text, builtin_specs, spec_path

NAMES = ["all-schemes", "all-schemes-relu", "cnn-adam", "deep-relu", "deep-relu-adam", "deep-tanh", "nielsen"]


def test_every_built_in_spec_is_in_the_package_and_valid():
    assert list(builtin_specs()) == NAMES
    for name, path in builtin_specs().items():
        assert path.parent == BUILTIN_SPECS and path.name == f"{name}.yaml"
        spec = ComparisonSpec.from_file(path)
        assert spec.name == name and spec.runs()
    factory = ComparisonSpec.from_file(builtin_specs()["cnn-adam"]).model.factory
    assert (BUILTIN_SPECS / factory.split(":")[0]).resolve() == BUILTIN_SPECS.parent / "models" / "small_cnn.py"


def test_a_name_is_the_built_in_spec_and_a_path_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nielsen").write_text("name: mine\n")  # a file named like a built-in spec
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    (tmp_path / "plain").write_text("name: plain\n")
    assert spec_path("nielsen") == builtin_specs()["nielsen"]  # a bare name: the built-in one
    assert spec_path("./nielsen").resolve() == tmp_path / "nielsen"  # a path: the file
    assert spec_path("mine.yaml").resolve() == tmp_path / "mine.yaml"
    assert spec_path(tmp_path / "nielsen") == tmp_path / "nielsen"
    assert spec_path("plain").resolve() == tmp_path / "plain"  # no built-in spec of that name: the file
    with pytest.raises(SpecError, match=r"nielsn: no built-in spec of that name and no such file; built-in specs: "
                                        r"all-schemes, all-schemes-relu, .*nielsen \(initlab list\)"):
        spec_path("nielsn")
    with pytest.raises(SpecError, match=r"configs/nielsen.yaml: no such spec file \(the built-in spec of that name: "
                                        r"initlab compare nielsen\)"):
        spec_path("configs/nielsen.yaml")


def test_list_shows_the_built_in_specs_schemes_and_initializers(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert f"\n  {name} " in out
    assert "Nielsen's weight-initialization experiment" in out  # a spec's first comment line
    assert "nielsen-default" in out and "SparseGaussian" in out


def test_a_printed_spec_is_a_starting_point_that_works_from_any_folder(tmp_path, monkeypatch, capsys):
    for name in NAMES:
        assert main(["spec", name]) == 0
        mine = tmp_path / f"{name}.yaml"
        mine.write_text(capsys.readouterr().out)
        monkeypatch.chdir(tmp_path)  # elsewhere than the package: a factory path must still resolve
        copy, original = ComparisonSpec.from_file(mine), ComparisonSpec.from_file(builtin_specs()[name])
        if name == "cnn-adam":  # the factory's relative path made absolute: the same file
            assert copy.model.factory == f"{BUILTIN_SPECS.parent / 'models' / 'small_cnn.py'}:build"
            assert dataclasses.replace(copy, model=original.model) == original  # and nothing else changed
        else:
            assert copy.hash == original.hash
    assert "# the installed example" in builtin_spec_text("cnn-adam")
    assert main(["spec", "nielsn"]) == 2
    assert "initlab spec: nielsn: no built-in spec of that name; built-in specs: all-schemes," in capsys.readouterr().err


def test_compare_and_diagnose_take_a_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "nielsn"]) == 2
    assert "initlab compare: nielsn: no built-in spec of that name and no such file" in capsys.readouterr().err
    assert main(["diagnose", "scripts/configs/deep-tanh.yaml"]) == 2  # where the specs were before
    assert "the built-in spec of that name: initlab compare deep-tanh" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before anything was written
