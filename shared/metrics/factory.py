"""The one place that picks the metrics implementation from Settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import PermanentError
from shared.metrics.observers import IstioObserver
from shared.metrics.provider import MetricsProvider
from shared.settings import Settings

if TYPE_CHECKING:
    import httpx


def metrics_provider(settings: Settings, http: httpx.Client) -> MetricsProvider:
    """Prometheus at ``prometheus_url``, or NoMetrics when ``metrics_provider`` is ``none``."""
    if settings.metrics_provider == "none":
        from shared.metrics.fake import NoMetrics

        return NoMetrics()
    if not settings.prometheus_url:
        raise PermanentError(
            "HEKATON_PROMETHEUS_URL is not set: metric analysis needs a Prometheus query API "
            "(or set HEKATON_METRICS_PROVIDER=none to run without metrics; no step then passes "
            "on metric evidence)"
        )
    from shared.metrics.prometheus import PrometheusProvider

    return PrometheusProvider(settings.prometheus_url, http, settings.metrics_timeout_seconds)


def metrics_observer(settings: Settings, http: httpx.Client) -> IstioObserver:
    """The Istio observer over the configured provider, with the configured revision label."""
    return IstioObserver(
        metrics_provider(settings, http),
        revision_label=settings.metrics_revision_label,
        service_label=settings.metrics_service_label,
    )
