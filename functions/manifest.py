"""Which functions exist, their entry points and triggers: read by deploy.sh and by the local stack."""

from __future__ import annotations

from dataclasses import dataclass

from events.steps import (
    DEAD_LETTER_TOPIC,
    REGISTRY_TOPIC,
    ROLLBACK_TOPIC,
    STEP_TOPICS,
    TICK_TOPIC,
    StepType,
)
from events.transitions import EVENTS_TOPIC


@dataclass(frozen=True)
class FunctionDef:
    """One deployable function: `functions-framework --source <source> --target <entry_point>`."""

    name: str
    source: str  # path of the module, relative to the repository root
    entry_point: str
    trigger_topic: str | None = None  # None: an HTTP function

    @property
    def http(self) -> bool:
        """True for HTTP-triggered functions."""
        return self.trigger_topic is None

    @property
    def dead_letters(self) -> bool:
        """True when the function's subscription dead-letters (all but the dead-letter recorder's)."""
        return self.trigger_topic not in (None, DEAD_LETTER_TOPIC)


FUNCTIONS: tuple[FunctionDef, ...] = (
    FunctionDef("ingest", "functions/ingest.py", "ingest", REGISTRY_TOPIC),
    FunctionDef("deploy", "functions/deploy.py", "deploy", STEP_TOPICS[StepType.DEPLOY]),
    FunctionDef(
        "wait-ready", "functions/wait_ready.py", "wait_ready", STEP_TOPICS[StepType.WAIT_READY]
    ),
    FunctionDef("validate", "functions/validate.py", "validate", STEP_TOPICS[StepType.VALIDATE]),
    FunctionDef("shift", "functions/shift.py", "shift", STEP_TOPICS[StepType.SHIFT]),
    FunctionDef("promote", "functions/promote.py", "promote", STEP_TOPICS[StepType.PROMOTE]),
    FunctionDef("tick", "functions/tick.py", "tick", TICK_TOPIC),
    FunctionDef("rollback", "functions/rollback.py", "rollback", ROLLBACK_TOPIC),
    # The optional webhook sink of the transition events (does nothing without its URL).
    FunctionDef("notify", "functions/notify.py", "notify", EVENTS_TOPIC),
    # Keeps every dead letter in Firestore for `hekaton dlq list` and `hekaton dlq replay`.
    FunctionDef("dead-letter", "functions/dead_letter.py", "dead_letter", DEAD_LETTER_TOPIC),
    FunctionDef("status", "functions/status.py", "status"),
    FunctionDef("control", "functions/control.py", "control"),
)

# Topics that exist without a function of ours publishing to them first.
EXTRA_TOPICS: tuple[str, ...] = (DEAD_LETTER_TOPIC,)


def topic_for_subscription(subscription: str | None) -> str | None:
    """The trigger topic of the function a subscription feeds, or None when it feeds none of ours.

    Local push subscriptions are `hekaton-<function>-push`; Eventarc's in GCP are
    `eventarc-<region>-hekaton-<function>-<n>-sub-<n>`: both hold `hekaton-<function>-`.
    """
    if not subscription:
        return None
    name = subscription.rsplit("/", 1)[-1]
    matches = [
        f
        for f in FUNCTIONS
        if f.dead_letters
        and (name.startswith(f"hekaton-{f.name}-") or f"-hekaton-{f.name}-" in name)
    ]
    # The longest function name wins, should one name ever be a prefix of another.
    best = max(matches, key=lambda f: len(f.name), default=None)
    return best.trigger_topic if best else None


def topics() -> list[str]:
    """Every topic hekaton uses (trigger topics plus the extras)."""
    names = [f.trigger_topic for f in FUNCTIONS if f.trigger_topic]
    return sorted(set(names) | set(EXTRA_TOPICS))
