"""Opaque cursors for paginated lists: the id of the last item on the previous page."""

from __future__ import annotations

import base64
import binascii
import json

from shared.api.http import ApiRequest, int_param
from shared.commands import Refused

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode(after: str) -> str:
    """A cursor for the page after item `after`."""
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def decode(cursor: str | None) -> str | None:
    """The item a cursor continues after (None: the first page); Refused("invalid") for a bad one."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw)["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise Refused("invalid", "the cursor is not one this API gave out") from None
    if not isinstance(after, str) or len(after) > 1500:
        raise Refused("invalid", "the cursor is not one this API gave out")
    return after


def window(request: ApiRequest) -> tuple[int, str | None]:
    """`limit` and the decoded `cursor` of a list request."""
    return int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT), decode(
        request.query.get("cursor")
    )


def next_cursor(ids: list[str], limit: int) -> str | None:
    """The cursor of the next page, or None when this page was the last (fewer than `limit` items)."""
    return encode(ids[-1]) if ids and len(ids) >= limit else None
