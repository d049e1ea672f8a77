"""The `initlab` command in this process (`initlab.cli.main`): its commands, their output and exit statuses."""

import dataclasses

from conftest import one_error_line, write_spec
from initlab.cli import main
from initlab.spec import ComparisonSpec, FactoryModel
from initlab.spec_files import BUILTIN_SPECS, builtin_spec_text, builtin_specs
from test_spec_files import NAMES


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
        if isinstance(original.model, FactoryModel):  # the factory's relative path made absolute: the same file
            file = {"cnn-adam": "small_cnn.py", "deep-relu-bn": "deep_relu_bn.py"}[name]
            assert copy.model.factory == f"{BUILTIN_SPECS.parent / 'models' / file}:build"
            assert dataclasses.replace(copy, model=original.model) == original  # and nothing else changed
        else:
            assert copy.hash == original.hash
    assert "# the installed example" in builtin_spec_text("cnn-adam")
    assert main(["spec", "nielsn"]) == 2
    assert (
        "initlab spec: nielsn: no built-in spec of that name; built-in specs: all-schemes," in capsys.readouterr().err
    )


def test_compare_and_diagnose_take_a_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "nielsn"]) == 2
    assert "initlab compare: nielsn: no built-in spec of that name and no such file" in capsys.readouterr().err
    assert main(["diagnose", "scripts/configs/deep-tanh.yaml"]) == 2  # where the specs were before
    assert "the built-in spec of that name: initlab compare deep-tanh" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_bad_spec_through_the_command_exits_2_before_training(tmp_path, capsys):
    assert main(["compare", str(write_spec(tmp_path, schemes=["sparce10"]))]) == 2
    assert "initlab compare: schemes[0]: unknown scheme 'sparce10'" in capsys.readouterr().err


def test_list_command(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "nielsen-default" in out and "SparseGaussian" in out


def test_diagnose_reports_an_output_folder_it_cannot_write(tmp_path, capsys):
    assert main(["diagnose", str(write_spec(tmp_path)), "--out", "/proc/no-such-folder/out"]) == 2
    assert "cannot write the figures to /proc/no-such-folder/out" in one_error_line(capsys.readouterr().err, "diagnose")


def test_a_long_value_is_not_echoed(tmp_path, capsys):
    path = write_spec(tmp_path, dataset=["x" * 500_000])
    assert main(["compare", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert (
        line.startswith(
            "initlab compare: dataset: must be a dataset name (mnist-10k, mnist, keras:NAME, a TensorFlow "
            "Datasets name) or {npz: PATH}; got ['xxx"
        )
        and len(line) < 300
    )
