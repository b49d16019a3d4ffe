"""Metrics: where to query (providers: Prometheus, a fake, none) and what to measure (observers).

``provider`` is the Protocol and its errors, ``prometheus`` the HTTP API implementation, ``fake``
the in-memory stand-ins for tests, ``observers`` turns Istio's standard metrics into the counts the
judge (``shared.analysis``) consumes, and ``factory`` picks the implementation from Settings.
"""
