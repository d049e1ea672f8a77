"""The built-in specs: shipped in the package, addressed by name (`initlab.spec_files.spec_path`), listed
(``initlab list``) and printed as a starting point (``initlab spec NAME``); reading a spec file, bounded."""

import json
import re
import time

import pytest

from conftest import RANDOM_NORMAL, TINY, one_error_line, write_spec
from initlab.cli import main
from initlab.spec import ComparisonSpec
from initlab.spec_files import BUILTIN_SPECS, SpecError, builtin_specs, read_spec_file, spec_path
from keras_initlab.schemes import list_schemes

BOMB = """name: bomb
schemes: [he]
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""
"""A "billion laughs" spec: nine aliases expand to 9**8 strings."""

NAMES = [
    "all-schemes",
    "all-schemes-relu",
    "cnn-adam",
    "deep-relu",
    "deep-relu-adam",
    "deep-relu-bn",
    "deep-tanh",
    "nielsen",
    "relu-bias",
]


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
    with pytest.raises(
        SpecError,
        match=r"nielsn: no built-in spec of that name and no such file; built-in specs: "
        r"all-schemes, all-schemes-relu, .*nielsen, relu-bias \(initlab list\)",
    ):
        spec_path("nielsn")
    with pytest.raises(
        SpecError,
        match=r"configs/nielsen.yaml: no such spec file \(the built-in spec of that name: "
        r"initlab compare nielsen\)",
    ):
        spec_path("configs/nielsen.yaml")


def test_spec_files_json_and_missing(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(TINY))
    spec = ComparisonSpec.from_file(path)
    assert spec.hash == ComparisonSpec.from_file(write_spec(tmp_path)).hash
    assert spec.replace(epochs=3).hash != spec.hash
    with pytest.raises(SpecError, match="no such spec file"):
        ComparisonSpec.from_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "content, message",
    [
        (BOMB, r"not valid YAML: aliases \(\*a\) are not allowed in a spec"),
        (
            "name: x\nschemes: [he]\nseeds: [" + ", ".join(map(str, range(300_000))) + "]\n",
            r"bytes; a spec is at most 1048576",
        ),
        (b"name: caf\xe9\nschemes: [he]\n", r"not UTF-8 text \(byte 9 is 0xe9\)"),
        (
            "name: x\nschemes: [he]\nepochs: 1000000000000\n",
            r"^epochs: must be an int between 1 and 100000; got 1000000000000$",
        ),
        (
            "name: x\nschemes: [he]\nseeds: [" + ", ".join(map(str, range(2000))) + "]\n",
            r"^seeds: must be a list of 1 to 1000",
        ),
        ("name: x\nschemes: [he]\n1: 2\n", r"^spec: must be a mapping of spec keys with str keys"),
        ("[" * 200_000, r"nested too deeply to be a spec"),
        (
            json.dumps(
                {
                    "name": "x",
                    "seeds": list(range(1000)),
                    "schemes": list(list_schemes()) + [{**RANDOM_NORMAL, "name": f"rn{i}"} for i in range(4)],
                }
            ),
            rf"^seeds: 1000 seeds x {len(list_schemes()) + 4} schemes = {1000 * (len(list_schemes()) + 4)} runs",
        ),
        (f"name: {'n' * 101}\nschemes: [he]\n", r"^name: must be a name of at most 100 letters"),
        ("name: x\nschemes: [he]\ndataset: " + "d" * 500_000 + "\nbogus: 1\n", r"^bogus: unknown key"),
    ],
)
def test_specs_are_bounded(tmp_path, content, message):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.perf_counter()
    with pytest.raises(SpecError, match=message) as info:
        ComparisonSpec.from_file(path)
    assert time.perf_counter() - started < 10  # refused, not parsed or expanded for minutes
    assert len(str(info.value)) < 600 and "\n" not in str(info.value)  # one line; a huge value is not echoed


SCHEME_TWICE = {"name": "rn", "kernel": {"class_name": "RandomNormal", "config": {"stddev": 0.1}}, "bias": "zeros"}


@pytest.mark.parametrize(
    "file, text, message",
    [
        (
            "spec.yaml",
            "name: a\nschemes: [he]\nname: b\n",
            r"^name: the key is given twice in its mapping; keep one \(lines 1 and 3\)$",
        ),
        (
            "spec.yaml",
            "name: a\nschemes: [he]\nmodel:\n  sizes: [784, 10]\n  activation: relu\n  activation: tanh\n",
            r"^model\.activation: the key is given twice in its mapping; keep one \(lines 5 and 6\)$",
        ),
        (
            "spec.yml",
            (
                "name: a\nschemes:\n- he\n- name: rn\n  kernel: {class_name: RandomNormal, config: {stddev: 0.1, "
                "stddev: 9}}\n  bias: zeros\n"
            ),
            r"^schemes\[1\]\.kernel\.config\.stddev: the key is given twice in its mapping; "
            r"keep one \(lines 5 and 5\)$",
        ),
        (
            "spec.json",
            '{"name": "a", "schemes": ["he"], "name": "b"}',
            r"^name: the key is given twice in its mapping; keep one$",
        ),
        (
            "spec.json",
            json.dumps({"name": "a", "schemes": ["he", SCHEME_TWICE]}).replace(
                '"stddev": 0.1', '"stddev": 0.1, "stddev": 9'
            ),
            r"^schemes\[1\]\.kernel\.config\.stddev: the key is given twice in its mapping; keep one$",
        ),
    ],
)
def test_a_key_given_twice_is_refused_with_its_key_path(tmp_path, file, text, message):
    """YAML and JSON parsers keep the later value silently: ``stddev: 9`` would train another scheme than the one
    read first."""
    (tmp_path / file).write_text(text)
    with pytest.raises(SpecError, match=message):
        ComparisonSpec.from_file(tmp_path / file)


def test_a_merge_may_repeat_a_key_of_its_mapping(tmp_path):
    """A YAML merge (``<<``) gives defaults that the mapping's own keys override: not a key given twice."""
    (tmp_path / "spec.yaml").write_text("name: a\nschemes: [he]\nmodel: {activation: tanh, <<: {activation: relu}}\n")
    assert read_spec_file(tmp_path / "spec.yaml")["model"] == {"activation": "tanh"}


def test_a_directory_is_not_a_spec_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    said = r"specs: a directory, not a spec file; give a \.yaml, \.yml or \.json file \(or a built-in spec's name"
    for given in ("specs/", "specs", str(tmp_path / "specs"), tmp_path / "specs"):
        with pytest.raises(SpecError, match=said):
            spec_path(given)
    with pytest.raises(SpecError, match=said):
        ComparisonSpec.from_file(tmp_path / "specs")
    assert main(["compare", "specs/"]) == 2
    assert re.fullmatch(f"initlab compare: {said}.*", one_error_line(capsys.readouterr().err))


@pytest.mark.parametrize("given", ["z" * 200, "z" * 5000, "z" * 5000 + ".yaml", "configs/" + "z" * 5000])
def test_a_long_spec_argument_is_shown_in_at_most_80_characters(tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        ComparisonSpec.from_file(spec_path(given))
    message = str(info.value)
    shown = 80 - len("configs/") * given.startswith("configs/")  # the first 80 characters
    assert re.fullmatch(rf"(configs/)?z{{{shown}}}\.\.\. \(\d+ characters\): .+", message)
    assert "\n" not in message and len(message) < 300


def test_a_long_key_given_twice_is_shown_in_at_most_80_characters(tmp_path):
    key = "k" * 5000
    (tmp_path / "spec.json").write_text(f'{{"name": "a", "schemes": ["he"], "{key}": 1, "{key}": 2}}')
    with pytest.raises(SpecError, match=r"^k{80}\.\.\. \(5000 characters\): the key is given twice"):
        read_spec_file(tmp_path / "spec.json")
