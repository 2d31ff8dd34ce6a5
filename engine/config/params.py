"""Building small frozen dataclasses from YAML parameters, with a clear message per mistake.

Actions (``- do: reply`` + parameters) and connector settings (``connector: {type: imap, ...}``)
are both dataclasses whose fields are exactly their YAML keys; this module checks the keys and
the value types against the field annotations before construction, pySigma-style.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from engine.errors import did_you_mean

T = TypeVar("T")
Mistake = tuple[str | None, str]


def build_from_params(cls: type[T], params: Mapping[str, Any], what: str) -> tuple[T | None, list[Mistake]]:
    """Construct ``cls`` from YAML parameters; returns it, or the (key, message) mistakes found.

    ``what`` names the thing in messages, e.g. ``"action 'reply'"`` or ``"connector 'imap'"``.
    A ValueError raised by the class's ``__post_init__`` becomes a mistake too.
    """
    mistakes: list[Mistake] = []
    hints, known = _parameters(cls)
    values: dict[str, Any] = {}
    for key, value in params.items():
        if key not in known:
            mistakes.append((key, f"{what} has no parameter {key!r}{did_you_mean(str(key), known)}"))
            continue
        error = type_error(hints[key], value)
        if error:
            mistakes.append((key, f"{what}: {key} {error}"))
            continue
        values[key] = tuple(value) if isinstance(value, list) else value
    for name, fld in known.items():
        missing = fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING
        if missing and name not in params:
            mistakes.append((None, f"{what} needs the parameter {name!r}"))
    if mistakes:
        return None, mistakes
    try:
        return cls(**values), []
    except (TypeError, ValueError) as exc:
        return None, [(None, f"{what}: {exc}")]


_Parameters = tuple[dict[str, Any], dict[str, "dataclasses.Field[Any]"]]
_PARAMETERS: dict[type, _Parameters] = {}


def _parameters(cls: type) -> _Parameters:
    """``cls``'s resolved field annotations and its ``__init__`` fields by name (not to be changed).

    Once per class: a pack builds the same action many times, and resolving the annotations
    (``typing.get_type_hints``) is most of what checking its parameters costs at every start-up.
    """
    found = _PARAMETERS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _PARAMETERS[cls] = (hints, {f.name: f for f in dataclasses.fields(cls) if f.init})
    return found


def type_error(hint: Any, value: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint``, or None if it does."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        return None if value in choices else f"must be one of {', '.join(map(str, choices))}, not {value!r}"
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = [type_error(a, value) for a in args if a is not type(None)]
        return None if any(e is None for e in errors) else errors[0]
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return f"must be a list, not {value!r}"
        inner = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        for item in value:
            error = type_error(inner, item)
            if error:
                return f"items {error}"
        return None
    if hint is bool:
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"must be a whole number, not {value!r}"
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"must be a number, not {value!r}"
    if hint is str:
        return None if isinstance(value, str) else f"must be text, not {value!r}"
    return None
