"""Untrusted input shared by every door: JSON bodies parsed by hand, query strings, integer ids.

One place for the generic checks, so the Azure DevOps, Graph and native routes and the validate
door answer the same bad input the same way — a precise InvalidInput, never a 500:

* JSON nested deeper than the parser can follow (``[[[[...`` 5,000 deep) is refused, not a
  RecursionError;
* a string holding a lone UTF-16 surrogate (``"\\ud800"`` is valid JSON but no text) is refused
  before it reaches the database or a JSON encoder;
* integers bound for a 64-bit column stay inside it (``MAX_ID``).
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import parse_qs

from tokenwarden.domain.errors import InvalidInput

MAX_ID: Final = 2**63 - 1
"""The largest value a BIGINT column (SQLite INTEGER, PostgreSQL BIGINT) holds."""
MAX_QUERY_FIELDS: Final = 10


def parse_json(raw: bytes, *, empty: str, prefix: str = "request body") -> Any:
    """The JSON document in ``raw``; InvalidInput when empty, malformed, too deep or not text."""
    if not raw.strip():
        raise InvalidInput(empty)
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidInput(f"{prefix} is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{prefix} is not valid JSON: {exc}") from exc
    where = lone_surrogate(value)
    if where is not None:
        raise InvalidInput(f"{prefix}: {where} holds a lone surrogate (not valid Unicode text)")
    return value


def lone_surrogate(value: Any, path: str = "$") -> str | None:
    """JSONPath-ish location of the first string (key or value) that is not encodable text."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not _is_text(item):
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and not _is_text(key):
                    return f"{where} (a key)"
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_query(query: str, max_fields: int = MAX_QUERY_FIELDS) -> dict[str, list[str]]:
    """``parse_qs`` with a bound on the number of fields, as InvalidInput past it."""
    try:
        return parse_qs(query, keep_blank_values=False, max_num_fields=max_fields)
    except ValueError:
        raise InvalidInput(f"too many query parameters (at most {max_fields})") from None
