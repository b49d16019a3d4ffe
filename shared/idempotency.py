"""Idempotency keys of operator requests: a safe document id per key, and a fingerprint of the ask."""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_KEY = 200  # longer keys are refused: a key is an id, not a payload


def request_id(origin: str, key: str) -> str:
    """The request record's document id: any key (slashes, dots, non-ASCII) maps to 40 safe hex chars."""
    return hashlib.sha256(f"{origin}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()[:40]


def fingerprint(ask: dict[str, Any]) -> str:
    """A short digest of what was asked, so one key reused for a different request is noticed."""
    text = json.dumps(ask, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
