"""Turn a pydantic validation error into one short sentence about one field.

Pydantic's own messages are long and list every error; a user fixing a YAML file wants the
first bad field, its path, and what would be accepted.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.config.yaml_source import ConfigError, Loc

_TYPE_WORDS = {
    "int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
    "list": "a list", "dict": "a mapping", "tuple": "a list", "model": "a mapping",
    "model_attributes": "a mapping",
}


def first_error(exc: ValidationError, model: type[BaseModel], prefix: Loc = ()) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = _clean_loc(err["loc"])
    return ConfigError(prefix + loc, describe(err, model, loc))


def describe(err: dict[str, Any], model: type[BaseModel], loc: Loc) -> str:
    kind: str = err["type"]
    ctx = err.get("ctx") or {}
    given = err.get("input")
    if kind == "missing":
        return "required; add it (`atax init` writes a complete example)"
    if kind == "extra_forbidden":
        parent = model_at(model, loc[:-1])
        if parent is not None and not parent.model_fields:
            return "unknown key; this takes no options"
        keys = [field.alias or name for name, field in parent.model_fields.items()] if parent is not None else []
        allowed = f"; allowed: {', '.join(keys)}" if parent is not None else ""
        return f"unknown key{allowed}"
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
              "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}
    if kind in bounds:
        symbol, key = bounds[kind]
        bound = ctx[key]
        return f"must be {symbol} {bound:g} (got {given!r})" if isinstance(bound, float) \
            else f"must be {symbol} {bound} (got {given!r})"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']} (got {given!r})"
    if kind == "too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"needs at least {ctx.get('min_length')} items"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_long":
        return f"has too many items (at most {ctx.get('max_length')})"
    if kind == "finite_number":
        return f"must be a finite number (got {given!r})"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    for prefix, words in _TYPE_WORDS.items():
        if kind in (f"{prefix}_type", f"{prefix}_parsing", f"{prefix}_from_float"):
            return f"must be {words} (got {_shown(given)})"
    return str(err["msg"])


def model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that holds the fields at `loc` (None when loc leaves the models)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _model_inside(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _model_inside(annotation: Any) -> Any:
    """Unwrap list[...], X | None and friends down to a model class, if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_inside(arg)
            if found is not None:
                return found
    return None


def _clean_loc(loc: tuple[Any, ...]) -> Loc:
    # Pydantic adds union member names and validator names to locations ("function-after[...]").
    return tuple(p for p in loc if isinstance(p, int) or not ("[" in p or p in ("int", "float", "str", "none")))


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
