"""Spec files: the built-in ones by name (`spec_path`, `builtin_spec_text`), and reading one (`read_spec_file`).

The built-in specs ship in the package (`BUILTIN_SPECS`, ``initlab list``) with the example model
factory they use (``examples/models``). Reading a spec is bounded: at most `MAX_SPEC_BYTES`, no YAML
aliases (a "billion laughs" file would expand to gigabytes). A key given twice in one mapping is refused (YAML and
JSON parsers keep the last silently). `SpecError` is every spec error's type; what the keys must hold is
`initlab.spec`'s to check. Imports nothing of Keras or the library, so that
``initlab list`` and ``initlab spec NAME`` answer at once.

>>> spec_path("nielsen").name
'nielsen.yaml'
"""

from __future__ import annotations

import collections.abc
import functools
import json
import os
import re
import stat
from pathlib import Path

from initlab.messages import shown_text

MAX_SPEC_BYTES = 1 << 20
"""Largest spec file read (1 MiB); a real spec is a few hundred bytes."""


class SpecError(ValueError):
    """A comparison spec is invalid; the message starts with the key path."""


class SpecTypeError(SpecError, TypeError):
    """A spec value has the wrong type; the message starts with the key path."""


BUILTIN_SPECS = Path(__file__).parent / "examples" / "specs"
"""The folder of the built-in specs (``<name>.yaml``); their example model factory is in ``../models``."""

_SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def builtin_specs() -> dict[str, Path]:
    """``{name: file}`` of the built-in specs, by name.

    >>> sorted(builtin_specs())[:2]
    ['all-schemes', 'all-schemes-relu']
    """
    return {path.stem: path for path in sorted(BUILTIN_SPECS.glob("*.yaml"), key=lambda path: path.stem)}


def spec_path(config: str | os.PathLike) -> Path:
    """The spec file that ``config`` names on a command line: a built-in spec's name or a file's path.

    The rule: a path object, or a string with a ``/`` or a ``.yaml``/``.yml``/``.json`` ending, is a file;
    a bare word (``nielsen``) is the built-in spec of that name, even when the current folder has a file of
    that name (write ``./nielsen`` for the file); a bare word that names no built-in spec is a file if one
    exists (and `ComparisonSpec.from_file` judges it).

    >>> spec_path("nielsen").name
    'nielsen.yaml'

    Raises:
        SpecError: a bare word that is neither (the message lists the built-in specs); a spec file that
            does not exist (with the built-in spec of the same name, if there is one); a directory.
    """
    builtins = builtin_specs()
    text = os.fspath(config)
    if isinstance(config, str) and "/" not in text and not text.endswith(_SPEC_SUFFIXES):
        if text in builtins:
            return builtins[text]
        if _status(Path(text)) is None:
            raise SpecError(
                f"{shown_text(text)}: no built-in spec of that name and no such file; built-in specs: "
                f"{', '.join(builtins)} (initlab list)"
            )
    path = Path(text)
    status = _status(path)
    if status is None and path.stem in builtins:
        raise SpecError(
            f"{shown_text(path)}: no such spec file (the built-in spec of that name: initlab compare {path.stem})"
        )
    if status is not None and stat.S_ISDIR(status.st_mode):
        raise _not_a_file(path, status)
    return path


def builtin_spec_text(name: str) -> str:
    """The text of the built-in spec ``name`` (comments kept), to start a spec of one's own from: a factory file's
    relative path in it is made absolute (the installed file), so that the copy works from any folder.

    Raises:
        SpecError: no built-in spec of that name (the message lists them).
    """
    builtins = builtin_specs()
    if name not in builtins:
        raise SpecError(f"{shown_text(name)}: no built-in spec of that name; built-in specs: {', '.join(builtins)}")
    path = builtins[name]

    def absolute(match: re.Match) -> str:
        return f"{match.group(1)}{(path.parent / match.group(2)).resolve()}{match.group(3)}   # the installed example"

    return re.sub(r"^(\s*factory:\s*)([^\s:/][^\s:]*\.py)(:\S+).*$", absolute, path.read_text(), flags=re.MULTILINE)


def read_spec_file(path: str | os.PathLike) -> object:
    """The content of a ``.yaml``/``.yml`` or ``.json`` spec file, parsed (not yet validated: that is
    `initlab.spec.ComparisonSpec.from_dict`'s job).

    Raises:
        SpecError: no such file (or a directory), over `MAX_SPEC_BYTES`, not UTF-8, not valid YAML or JSON
            (YAML aliases refused), a key given twice in one mapping (the message has its key path),
            nested too deeply, or another suffix.
    """
    path = Path(path)
    status = _status(path)
    if status is None or not stat.S_ISREG(status.st_mode):
        raise _not_a_file(path, status)
    where = shown_text(path)
    if status.st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{where}: {status.st_size} bytes; a spec is at most {MAX_SPEC_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{where}: not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml  # ~20 ms: loaded when a YAML spec is read

        try:
            raw = yaml.load(text, Loader=_spec_loader())
        except yaml.YAMLError as e:
            raise SpecError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
        except RecursionError:
            raise SpecError(f"{where}: nested too deeply to be a spec") from None
    elif path.suffix == ".json":
        twice: list[tuple[dict, str]] = []
        try:
            raw = json.loads(text, object_pairs_hook=functools.partial(_json_object, twice=twice))
            if twice:
                mapping, key = twice[0]
                raise SpecError(f"{_key_path(_path_to(raw, mapping), key)}: {_GIVEN_TWICE}")
        except json.JSONDecodeError as e:
            raise SpecError(f"{where}: not valid JSON: {e}") from None
        except RecursionError:
            raise SpecError(f"{where}: nested too deeply to be a spec") from None
    else:
        raise SpecError(f"{where}: a spec must be a .yaml, .yml or .json file")
    return raw


_GIVEN_TWICE = "the key is given twice in its mapping; keep one"


def _status(path: Path) -> os.stat_result | None:
    """``os.stat`` of ``path``, None when nothing is there; a `SpecError` when it cannot be looked at (a name too
    long, no permission)."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise SpecError(f"{shown_text(path)}: cannot be read as a spec file ({e.strerror})") from None


def _not_a_file(path: Path, status: os.stat_result | None) -> SpecError:
    """The error for a spec path where no file is: nothing there, or a directory (or another non-file)."""
    if status is None:
        return SpecError(f"{shown_text(path)}: no such spec file")
    what = "a directory" if stat.S_ISDIR(status.st_mode) else "not a regular file"
    return SpecError(
        f"{shown_text(path)}: {what}, not a spec file; give a .yaml, .yml or .json file "
        f"(or a built-in spec's name: initlab list)"
    )


def _key_path(parent: str, key: object) -> str:
    """``model`` + ``sizes`` -> ``model.sizes`` (a top-level key alone); the key shown at most `MAX_SHOWN` long."""
    return f"{parent}.{shown_text(key)}" if parent else shown_text(key)


def _json_object(pairs: list[tuple[str, object]], twice: list[tuple[dict, str]]) -> dict:
    """A JSON object as a dict; each key given twice in it noted in ``twice`` with the dict (its key path is found
    once the whole document is parsed: objects are built innermost first)."""
    mapping: dict = {}
    for key, value in pairs:
        if key in mapping:
            twice.append((mapping, key))
        mapping[key] = value
    return mapping


def _path_to(tree: object, target: dict, path: str = "") -> str | None:
    """The key path of the object ``target`` (by identity) in a parsed JSON ``tree``, None if it is not there."""
    if tree is target:
        return path
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, child in children:
        found = _path_to(child, target, f"{path}[{key}]" if isinstance(tree, list) else _key_path(path, key))
        if found is not None:
            return found
    return None


@functools.cache
def _spec_loader():
    """PyYAML's safe loader, refusing aliases (``*name``: they let a few bytes expand to gigabytes) and a key given
    twice in one mapping (a `SpecError` with its key path and both lines); it notes each node's key path as it
    composes the document."""
    import yaml

    merge = "tag:yaml.org,2002:merge"

    class Loader(yaml.SafeLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self.key_paths: dict[int, str] = {}  # id(node) -> its key path; the nodes live as long as the loader
            self.composing: list[str] = []  # the key paths of the nodes being composed, innermost last

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"aliases (*{event.anchor}) are not allowed in a spec; write the value out",
                    event.start_mark,
                )
            outer = self.composing[-1] if self.composing else ""
            if isinstance(index, int):  # an item of a sequence
                path = f"{outer}[{index}]"
            elif isinstance(index, yaml.ScalarNode):  # the value of a mapping's key
                path = _key_path(outer, index.value)
            else:  # the document, or a mapping's key itself
                path = outer
            self.composing.append(path)
            try:
                node = super().compose_node(parent, index)
            finally:
                self.composing.pop()
            self.key_paths[id(node)] = path
            return node

        def construct_mapping(self, node, deep=False):
            lines: dict = {}  # key -> the line it is first given on
            for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
                if key_node.tag == merge:
                    continue  # a merge (<<) may repeat keys: the mapping's own win
                key = self.construct_object(key_node, deep=deep)  # built once: the constructor keeps it
                if not isinstance(key, collections.abc.Hashable):
                    continue  # PyYAML's own error
                line = key_node.start_mark.line + 1
                if key in lines:
                    raise SpecError(
                        f"{_key_path(self.key_paths[id(node)], key_node.value)}: "
                        f"{_GIVEN_TWICE} (lines {lines[key]} and {line})"
                    )
                lines[key] = line
            return super().construct_mapping(node, deep)

    return Loader
