"""Deterministic task ids: one per (rollout, sequence number, due time), in Cloud Tasks' alphabet."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

# Cloud Tasks task ids: letters, digits, hyphens and underscores, at most 500 characters.
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")
MAX_TASK_ID = 500
# Rollout ids are short today; the bound keeps any id (and so the whole name) well inside the limit.
MAX_ROLLOUT_PART = 200


def task_id(rollout_id: str, seq: int, due_at: datetime) -> str:
    """The task id of the wake-up of `rollout_id` at `seq` due at `due_at` (UTC milliseconds).

    The due time is part of the name because a step may wait several times within one sequence
    number (readiness polls, analysis intervals). A short hash of the whole key comes first: Cloud
    Tasks spreads names with sequential prefixes badly, and it keeps ids unique when sanitising
    or truncating the rollout id merged two of them.
    """
    due_ms = round(due_at.timestamp() * 1000)
    key = f"{rollout_id}\n{seq}\n{due_ms}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    readable = _NOT_ALLOWED.sub("_", rollout_id)[:MAX_ROLLOUT_PART]
    return f"{digest}-{readable}-s{seq}-{due_ms}"


# The queue every timer goes to (deploy.sh creates it in GCP; the local stack's emulator at start).
QUEUE_ID = "hekaton-timers"


def queue_path(project: str, location: str) -> str:
    """The queue's full name, as HEKATON_TASKS_QUEUE takes it."""
    return f"projects/{project}/locations/{location}/queues/{QUEUE_ID}"
