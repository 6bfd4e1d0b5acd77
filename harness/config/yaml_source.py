"""Read an experiment YAML file keeping its node tree, so every error can name a line.

PyYAML silently keeps the last of two equal keys; a researcher who writes `lr:` twice
deserves an error instead, so duplicate keys are rejected here. The file's shape is bounded
before anything is built from it: a few KB of nested aliases ("billion laughs") would otherwise
expand to billions of nodes, and deep nesting would overflow PyYAML's recursive composer.
Non-finite and out-of-64-bit numbers are refused anywhere in the file (no field wants them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError

Loc = tuple[str | int, ...]

MAX_FILE_BYTES = 4 << 20  # an experiment file is a few KB; the paper's is under 3 KB
MAX_DEPTH = 64  # nesting levels of mappings and lists
MAX_NODES = 50_000  # scalars and collections after alias expansion
_INT64 = 1 << 63
_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels; an experiment file needs a handful"


class ConfigError(UserError):
    """A bad field: `loc` is its path in the YAML document, e.g. ("methods", 2, "options", "k")."""

    def __init__(self, loc: Loc, message: str) -> None:
        self.loc = tuple(loc)
        self.detail = message
        super().__init__(f"{format_loc(self.loc)}: {message}")


def format_loc(loc: Loc) -> str:
    """("methods", 2, "options", "k") -> "methods[2].options.k"."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


@dataclass(frozen=True)
class YamlSource:
    path: Path
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of the deepest node of `loc` that exists in the file."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        line = key.start_mark.line + 1
                        child = value
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
                line = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return line

    def error(self, exc: ConfigError) -> UserError:
        """The one-line message for a bad field: `FILE:LINE: path: what is wrong`."""
        line = self.line_of(exc.loc)
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        return UserError(f"{where}: {exc}")


def read_yaml(path: Path) -> YamlSource:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found; `atax init --out {path}` writes an example")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give an experiment YAML file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path}: {size / 2**20:.1f} MB is too large for an experiment file "
                        f"(at most {MAX_FILE_BYTES >> 20} MB); give the experiment YAML, not data")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); check its permissions") from exc
    try:
        _check_shape(text, path)
        root, data = _compose_and_construct(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        if "maximum nesting depth" in problem and mark is not None:  # libyaml's own bound met before ours
            raise UserError(f"{path}:{mark.line + 1}: {_TOO_DEEP}") from None
        raise UserError(f"{where}: invalid YAML: {problem}") from exc
    source = YamlSource(path, data, root)
    if data is None:
        raise UserError(f"{path}: the file is empty; `atax init --out FILE` writes an example")
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: the top level must be a mapping of keys (name, base_model, data, ...), "
                        f"not a {type(data).__name__}")
    _reject_duplicate_keys(source, root, ())
    try:
        _reject_unsafe_numbers(data, ())
    except ConfigError as exc:
        raise source.error(exc) from None
    return source


# libyaml when installed (the usual wheel ships it): the same documents and marks, a fraction of the CPU.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_and_construct(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data built from that same tree: one parse."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


def _check_shape(text: str, path: Path) -> None:
    """Refuse deep nesting and alias expansion past the bounds, from the parser's event stream
    (iterative, and aliases cost the size of what they stand for without being expanded)."""
    anchored: dict[str, int] = {}  # anchor -> nodes it expands to
    open_sizes: list[list[Any]] = []  # per open collection: [nodes so far, anchor]
    total = 0
    for event in yaml.parse(text, Loader=_LOADER):
        added = 0
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(open_sizes) >= MAX_DEPTH:
                raise UserError(f"{path}:{event.start_mark.line + 1}: {_TOO_DEEP}")
            open_sizes.append([1, event.anchor])
            added = 1
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            size, anchor = open_sizes.pop()
            if anchor is not None:
                anchored[anchor] = size
            if open_sizes:
                open_sizes[-1][0] += size
            continue
        elif isinstance(event, yaml.ScalarEvent):
            added = 1
            if event.anchor is not None:
                anchored[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for _, anchor in open_sizes):
                raise UserError(f"{path}:{event.start_mark.line + 1}: alias *{event.anchor} refers to a value "
                                "that contains it; write the value out")
            added = anchored.get(event.anchor, 1)
        else:
            continue
        total += added
        if open_sizes and not isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            open_sizes[-1][0] += added
        if total > MAX_NODES:
            raise UserError(f"{path}:{event.start_mark.line + 1}: the file expands to more than {MAX_NODES:,} "
                            "values (YAML aliases repeat what they point to); write the experiment out plainly")


def _reject_unsafe_numbers(data: Any, loc: Loc) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            _reject_unsafe_numbers(value, loc + (str(key),))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _reject_unsafe_numbers(value, loc + (index,))
    elif isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(loc, f"must be a finite number (got {data!r})")
    elif isinstance(data, int) and not isinstance(data, bool) and not -_INT64 <= data < _INT64:
        raise ConfigError(loc, f"{data} is out of range (more than 64 bits)")


def _reject_duplicate_keys(source: YamlSource, node: yaml.Node | None, loc: Loc) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            if name in seen:
                where = f"{source.path}:{key.start_mark.line + 1}"
                raise UserError(f"{where}: {format_loc(loc + (name,))}: duplicate key; keep one")
            seen.add(name)
            _reject_duplicate_keys(source, value, loc + (name,))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicate_keys(source, item, loc + (index,))
