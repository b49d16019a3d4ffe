"""Retry behaviour lives in the error type: retryable errors make Pub/Sub redeliver, permanent ones are recorded."""


class HekatonError(Exception):
    """Base of hekaton's own errors."""


class RetryableError(HekatonError):
    """A transient failure (network, contention, a dependency not ready): raise so Pub/Sub redelivers."""


class PermanentError(HekatonError):
    """A failure that redelivery cannot fix: record it with its reason and acknowledge the message."""


class GoneFromCluster(PermanentError):
    """The object a write names no longer exists in the cluster (deleted behind hekaton's back)."""


class PreconditionFailed(RetryableError):
    """Someone else updated the document since we read it; reload and decide again."""


class NotFound(HekatonError):
    """The named service, rollout or revision does not exist."""
