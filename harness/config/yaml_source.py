"""Read an experiment YAML file keeping its node tree, so every error can name a line.

PyYAML silently keeps the last of two equal keys; a researcher who writes `lr:` twice
deserves an error instead, so duplicate keys are rejected here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError

Loc = tuple[str | int, ...]


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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); check its permissions") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{where}: invalid YAML: {problem}") from exc
    source = YamlSource(path, data, root)
    if data is None:
        raise UserError(f"{path}: the file is empty; `atax init --out FILE` writes an example")
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: the top level must be a mapping of keys (name, base_model, data, ...), "
                        f"not a {type(data).__name__}")
    _reject_duplicate_keys(source, root, ())
    return source


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
