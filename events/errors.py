"""The one error type for payloads hekaton cannot understand."""

# A reason may quote the input, and input can be megabytes: keep what is recorded and logged small.
MAX_REASON = 1000  # characters


class MalformedEvent(ValueError):
    """A payload that can never be processed; the caller records it and acknowledges it."""

    def __init__(self, reason: str) -> None:
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 1] + "…"
        super().__init__(reason)
        self.reason = reason
