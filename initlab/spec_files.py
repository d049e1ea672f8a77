"""Spec files: the built-in ones by name (`spec_path`, `builtin_spec_text`), and reading one (`read_spec_file`).

The built-in specs ship in the package (`BUILTIN_SPECS`, ``initlab list``) with the example model
factory they use (``examples/models``). Reading a spec is bounded: at most `MAX_SPEC_BYTES`, no YAML
aliases (a "billion laughs" file would expand to gigabytes). `SpecError` is every spec error's type;
what the keys must hold is `initlab.spec`'s to check. Imports nothing of Keras or the library, so that
``initlab list`` and ``initlab spec NAME`` answer at once.

>>> spec_path("nielsen").name
'nielsen.yaml'
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

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
            does not exist (with the built-in spec of the same name, if there is one).
    """
    builtins = builtin_specs()
    text = os.fspath(config)
    if isinstance(config, str) and "/" not in text and not text.endswith(_SPEC_SUFFIXES):
        if text in builtins:
            return builtins[text]
        if not Path(text).is_file():
            raise SpecError(f"{text}: no built-in spec of that name and no such file; built-in specs: "
                            f"{', '.join(builtins)} (initlab list)")
    path = Path(text)
    if not path.exists() and path.stem in builtins:
        raise SpecError(f"{path}: no such spec file (the built-in spec of that name: initlab compare {path.stem})")
    return path


def builtin_spec_text(name: str) -> str:
    """The text of the built-in spec ``name`` (comments kept), to start a spec of one's own from: a factory file's
    relative path in it is made absolute (the installed file), so that the copy works from any folder.

    Raises:
        SpecError: no built-in spec of that name (the message lists them).
    """
    builtins = builtin_specs()
    if name not in builtins:
        raise SpecError(f"{name}: no built-in spec of that name; built-in specs: {', '.join(builtins)}")
    path = builtins[name]

    def absolute(match: re.Match) -> str:
        return f"{match.group(1)}{(path.parent / match.group(2)).resolve()}{match.group(3)}   # the installed example"

    return re.sub(r"^(\s*factory:\s*)([^\s:/][^\s:]*\.py)(:\S+).*$", absolute, path.read_text(), flags=re.MULTILINE)


def read_spec_file(path: str | os.PathLike) -> object:
    """The content of a ``.yaml``/``.yml`` or ``.json`` spec file, parsed (not yet validated: that is
    `initlab.spec.ComparisonSpec.from_dict`'s job).

    Raises:
        SpecError: no such file, over `MAX_SPEC_BYTES`, not UTF-8, not valid YAML or JSON (YAML aliases
            refused), nested too deeply, or another suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: {size} bytes; a spec is at most {MAX_SPEC_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml  # ~20 ms: loaded when a YAML spec is read

        try:
            raw = yaml.load(text, Loader=_loader_without_aliases())
        except yaml.YAMLError as e:
            raise SpecError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
        except RecursionError:
            raise SpecError(f"{path}: nested too deeply to be a spec") from None
    elif path.suffix == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{path}: not valid JSON: {e}") from None
        except RecursionError:
            raise SpecError(f"{path}: nested too deeply to be a spec") from None
    else:
        raise SpecError(f"{path}: a spec must be a .yaml, .yml or .json file")
    return raw


@functools.cache
def _loader_without_aliases():
    """PyYAML's safe loader, refusing aliases (``*name``): they let a few bytes expand to gigabytes."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"aliases (*{event.anchor}) are not allowed in a spec; write the value out",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

    return Loader
