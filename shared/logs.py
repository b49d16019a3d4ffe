"""Structured logging: one JSON object per line (Cloud Logging reads `severity` and `message`)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats records as Cloud Logging structured JSON, with any `extra=` fields alongside."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a JSON line."""
        payload: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure(level: int = logging.INFO, fmt: str = "json") -> None:
    """Send hekaton's logs to stdout, JSON by default; idempotent."""
    root = logging.getLogger("hekaton")
    if getattr(root, "_hekaton_configured", False):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(levelname)s %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    root._hekaton_configured = True  # type: ignore[attr-defined]


def get_logger(name: str) -> logging.Logger:
    """A logger under the `hekaton` namespace."""
    return logging.getLogger(f"hekaton.{name}")
