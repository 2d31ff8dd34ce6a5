"""Generic helpers for reading a YAML config node: typed values, sections, unknown keys, ``${VAR}``.

Each helper records a mistake in ``problems`` at the offending key (``file:line:col: message``) and
returns a default, so a reader can go on and report every mistake at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.config.params import type_error
from engine.config.yaml_source import Problems, is_mapping, is_sequence, position
from engine.errors import Problem, did_you_mean

ENV_REF = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")

_KIND_NAMES: dict[type, str] = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


@dataclass(frozen=True)
class UnsetSecret:
    """A setting whose ``${VAR}`` was not set when the config was read: a mistake only where it is used.

    Connector and outgoing-server settings hold one in place of the value, so that commands that
    never connect (``status``, ``show``, ``outbox``, ``quarantine list``) run without the service's
    secrets; making the connector or transport raises ``problem`` (``engine.config.secrets``).
    """

    variable: str
    problem: Problem


def expand_env(value: Any, node: Any, key: Any, problems: Problems, *, defer_unset: bool = False) -> Any:
    """``value`` with each ``${VAR}`` / ``${env:VAR}`` replaced; an unset variable is a mistake at ``key``.

    With ``defer_unset`` an unset variable is not a mistake now: the value becomes an ``UnsetSecret``.
    """
    if not isinstance(value, str):
        return value
    if defer_unset:
        unset = [name for name in ENV_REF.findall(value) if name not in os.environ]
        if unset:
            line, col = position(node, key)
            message = f"environment variable {unset[0]} is not set"
            return UnsetSecret(unset[0], Problem(problems.filename, line, col, message))

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            problems.at(node, key, f"environment variable {name} is not set")
            return ""
        return os.environ[name]

    return ENV_REF.sub(repl, value)


def is_unset(value: Any) -> bool:
    """Whether a setting is an ``UnsetSecret`` (its ``${VAR}`` was not set)."""
    return isinstance(value, UnsetSecret)


def unset_secrets(settings: Mapping[str, Any]) -> list[Problem]:
    """Where each setting whose ``${VAR}`` was not set is written, and which variable it is."""
    return [value.problem for value in settings.values() if isinstance(value, UnsetSecret)]


def check_keys(node: Any, allowed: tuple[str, ...], where: str, problems: Problems) -> None:
    """Record every key of ``node`` not in ``allowed`` as unknown, with the closest allowed name."""
    for key in node:
        if key not in allowed:
            problems.at_key(node, key, f"unknown key {key!r} in {where}{did_you_mean(str(key), allowed)}")


def get_value(
    node: Any, key: str, kind: type | tuple[type, ...], problems: Problems, default: Any = None
) -> Any:
    """``node[key]`` env-expanded and of type ``kind`` (an int is taken as a float); else ``default``."""
    if key not in node or node[key] is None:
        return default
    value = expand_env(node[key], node, key, problems)
    if kind is bool and not isinstance(value, bool):
        problems.at(node, key, f"{key} must be true or false, not {value!r}")
        return default
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
        problems.at(node, key, f"{key} must be {wanted}, not {describe_value(value)}")
        return default
    return value


def describe_value(value: Any) -> str:
    """How a wrong value is shown: short values as written, containers by what they are."""
    if is_mapping(value):
        return "a mapping"
    if is_sequence(value):
        return "a list"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return repr(value)


def get_section(node: Any, key: str, what: str, problems: Problems) -> Any:
    """The mapping at ``node[key]`` ({} when absent or empty); anything else is a mistake."""
    value = node.get(key)
    if value is None:
        return {}
    if not is_mapping(value):
        problems.at(node, key, f"{key} must be {what}")
        return {}
    return value


def typed_env_text(hint: Any, text: Any) -> Any:
    """A secret's text as the number or true/false its setting expects (``port: ${IMAP_PORT}``)."""
    if not isinstance(text, str) or type_error(hint, text) is None:
        return text
    word = text.strip().lower()
    candidates: list[Any] = [word == "true"] if word in ("true", "false") else []
    if re.fullmatch(r"[+-]?\d+", word):
        candidates.append(int(word))
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?", word):
        candidates.append(float(word))
    return next((value for value in candidates if type_error(hint, value) is None), text)
