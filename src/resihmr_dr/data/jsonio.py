"""JSON in: reading files with errors that name the file and the position, and the type checks of
parsed values shared by the loaders (a JSON ``true`` is not a number)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from resihmr_dr.data.errors import DataError

__all__ = ["is_int", "is_number", "read_json", "read_json_object", "type_name"]


def is_int(x: Any) -> bool:
    """A JSON integer (a Python ``int``, not ``bool``)."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    """A JSON number (``int`` or ``float``, not ``bool``)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def type_name(x: Any) -> str:
    """The JSON-facing name of a value's type for messages: ``"null"`` for ``None``."""
    return "null" if x is None else type(x).__name__


def read_json(path: Path) -> Any:
    """Parse a JSON file; every failure is a DataError naming the file (and line/column)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as err:
        raise DataError(f"cannot read file: {err}", path=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text: {err}", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}", path=path) from None
    except RecursionError:
        raise DataError("malformed JSON: nested too deeply", path=path) from None
    except ValueError as err:  # e.g. an integer beyond Python's digit limit
        raise DataError(f"malformed JSON: {err}", path=path) from None


def read_json_object(path: Path) -> dict:
    """:func:`read_json` for a file that must hold a JSON object (DataError otherwise)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object, got {type(data).__name__}", path=path)
    return data
