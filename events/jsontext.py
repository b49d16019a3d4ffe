"""Decode untrusted JSON text: every way it can fail (bad UTF-8, bad syntax, nesting too deep for the
parser, integers past Python's digit limit, NaN/Infinity) ends as one MalformedEvent naming what."""

from __future__ import annotations

import json
from typing import Any

from events.errors import MalformedEvent


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(data: bytes | str, what: str) -> Any:
    """The JSON value in `data`; MalformedEvent("<what> is not JSON: ...") when there is none."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise MalformedEvent(
            f"{what} is not JSON this parser can read: nested too deeply"
        ) from None
    except UnicodeDecodeError as exc:
        raise MalformedEvent(
            f"{what} is not JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    except ValueError as exc:  # JSONDecodeError, and int() refusing more than 4300 digits
        raise MalformedEvent(f"{what} is not JSON: {str(exc)[:200]}") from None
    bad = _first_unencodable(value)
    if bad is not None:
        raise MalformedEvent(f"{what} holds a string that is not valid Unicode: {bad}")
    return value


def encodable(text: str) -> bool:
    """Whether `text` is valid Unicode (no lone surrogates, which JSON escapes allow and UTF-8 cannot hold)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_unencodable(value: Any) -> str | None:
    """A printable excerpt of the first string (or key) in `value` that UTF-8 cannot encode, or None."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not encodable(item):
                return ascii(item[:40])
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None
