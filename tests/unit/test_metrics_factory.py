"""The metrics factory and Deps.metrics: the implementation follows Settings; tests override it."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from shared.deps import Deps
from shared.errors import PermanentError
from shared.metrics.factory import metrics_observer, metrics_provider
from shared.metrics.fake import FakeProvider, NoMetrics
from shared.metrics.observers import IstioObserver
from shared.metrics.prometheus import PrometheusProvider
from shared.settings import Settings


def test_prometheus_is_built_from_its_url_timeout_and_labels() -> None:
    settings = Settings(
        project="p",
        prometheus_url="http://prom:9090/",
        metrics_timeout_seconds=1.5,
        metrics_revision_label="destination_workload",
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": []}}
        )

    http = httpx.Client(transport=httpx.MockTransport(handler))
    observer = metrics_observer(settings, http)

    assert isinstance(observer.provider, PrometheusProvider)
    assert observer.provider.description == "Prometheus at http://prom:9090"
    assert observer.revision_label == "destination_workload"
    assert observer.service_label == "destination_canonical_service"
    observer.measure(
        "models",
        "iris",
        "iris-1",
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        250,
    )
    assert len(seen) == 4 and {r.url.params["timeout"] for r in seen} == {"1.5s"}


def test_none_is_the_no_op_and_a_missing_url_is_a_clear_permanent_error() -> None:
    http = httpx.Client()
    assert isinstance(
        metrics_provider(Settings(project="p", metrics_provider="none"), http), NoMetrics
    )
    with pytest.raises(
        PermanentError, match=r"HEKATON_PROMETHEUS_URL is not set.*HEKATON_METRICS_PROVIDER=none"
    ):
        metrics_provider(Settings(project="p"), http)


def test_deps_builds_metrics_lazily_and_takes_an_override() -> None:
    deps = Deps(Settings(project="p", prometheus_url="http://prom:9090"))
    assert "metrics" not in deps.__dict__  # nothing built until a step asks
    assert isinstance(deps.metrics, IstioObserver) and deps.metrics is deps.metrics
    fake = IstioObserver(FakeProvider())
    assert Deps(Settings(project="p"), metrics=fake).metrics is fake
