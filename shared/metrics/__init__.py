"""Metrics: where to query (providers: Prometheus, a fake, none) and what to measure (observers).

``provider`` is the Protocol and its errors, ``prometheus`` the HTTP API implementation, ``fake``
the in-memory stand-ins for tests, ``observers`` turns Istio's standard metrics into the counts the
judge (``shared.analysis``) consumes, and ``factory`` picks the implementation from Settings.

A step measures both arms over the same window through ``Deps.metrics`` (an ``Observer``)::

    candidate = deps.metrics.measure(ns, service, rollout.revision, start, now, threshold_ms)
    stable = deps.metrics.measure(ns, service, rollout.stable_revision, start, now, threshold_ms)
    candidate.counts, stable.counts      # ArmCounts(requests, errors, slow) for the judge
    candidate.as_dict()                  # counts, by_code, resets, window and PromQL, for the log

``MetricsUnavailable`` (retryable) and ``MetricsQueryError`` (permanent) propagate: a failed
query is never zero counts.
"""
