"""The one error type for payloads hekaton cannot understand."""


class MalformedEvent(ValueError):
    """A payload that can never be processed; the caller records it and acknowledges it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
