"""Where a YAML file goes beyond what can be read: nesting too deep for the parser, a number too long.

ruamel.yaml builds the tree recursively, so a document nested thousands of levels deep (``[[[[…``)
exhausts Python's stack, and it turns an integer of more than 4,300 digits into an ``int`` that
Python refuses to convert. Both surface as exceptions without a position. When one does, the file
is scanned again, token by token (the scanner does not recurse), to find the place to report.
"""

from __future__ import annotations

import re
import sys

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.tokens import (
    BlockEndToken,
    BlockMappingStartToken,
    BlockSequenceStartToken,
    FlowMappingEndToken,
    FlowMappingStartToken,
    FlowSequenceEndToken,
    FlowSequenceStartToken,
    ScalarToken,
)

from engine.errors import Problem

MAX_NESTING = 100  # levels of lists and mappings reported as too deep once the parser gave up
_OPENING = (BlockMappingStartToken, BlockSequenceStartToken, FlowMappingStartToken, FlowSequenceStartToken)
_CLOSING = (BlockEndToken, FlowMappingEndToken, FlowSequenceEndToken)
_INTEGER = re.compile(r"[-+]?[0-9_]+")


def too_deep(text: str, filename: str) -> Problem:
    """Where the nesting of ``text`` first goes deeper than ``MAX_NESTING`` levels."""
    depth = 0
    try:
        for token in YAML(typ="rt").scan(text):
            if isinstance(token, _OPENING):
                depth += 1
                if depth > MAX_NESTING:
                    mark = token.start_mark
                    message = f"invalid YAML: lists and mappings nested more than {MAX_NESTING} levels deep"
                    return Problem(filename, mark.line + 1, mark.column + 1, message)
            elif isinstance(token, _CLOSING):
                depth -= 1
    except YAMLError:
        pass
    return Problem(filename, 1, 1, f"invalid YAML: nested too deeply to be read (over {MAX_NESTING} levels)")


def too_long_number(text: str, filename: str) -> Problem | None:
    """Where ``text`` has an integer too long for Python to convert (more than 4,300 digits), if it has."""
    limit = sys.get_int_max_str_digits() or 4300
    try:
        for token in YAML(typ="rt").scan(text):
            if isinstance(token, ScalarToken) and token.plain and _INTEGER.fullmatch(token.value):
                digits = sum(ch.isdigit() for ch in token.value)
                if digits > limit:
                    mark = token.start_mark
                    message = f"number too large: {digits} digits"
                    return Problem(filename, mark.line + 1, mark.column + 1, message)
    except YAMLError:
        pass
    return None
