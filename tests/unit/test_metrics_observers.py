"""IstioObserver: the PromQL it runs, and its arithmetic over scraped counters (fake provider)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.analysis.counts import ArmCounts
from shared.metrics.fake import FakeProvider, IstioTraffic, NoMetrics
from shared.metrics.observers import (
    ISTIO_DURATION_BUCKETS_MS,
    IstioObserver,
    validate_latency_threshold,
)
from shared.metrics.provider import MetricsQueryError, MetricsUnavailable, Sample

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NS, SVC, CAND, STABLE = "models", "iris", "iris-00002", "iris-00001"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Mesh:
    """Istio traffic scraped every second into a fake Prometheus, and an observer on it."""

    def __init__(self, **observer_options: str) -> None:
        self.prometheus = FakeProvider()
        self.traffic = IstioTraffic(
            self.prometheus,
            revision_label=observer_options.get("revision_label", "destination_canonical_revision"),
        )
        self.observer = IstioObserver(self.prometheus, **observer_options)
        self.clock = 0

    def tick(self, seconds: int = 1) -> None:
        """Let `seconds` pass, scraping once a second."""
        for _ in range(seconds):
            self.clock += 1
            self.traffic.scrape(at(self.clock))

    def measure(self, revision: str, start: float, end: float, threshold: float = 250) -> ArmCounts:
        return self.observer.measure(NS, SVC, revision, at(start), at(end), threshold).counts


def test_the_queries_are_raw_reads_at_start_and_last_over_time_at_end() -> None:
    mesh = Mesh()
    measurement = mesh.observer.measure(NS, SVC, CAND, at(10), at(70), 250)
    selector = (
        'reporter="destination",destination_service_namespace="models",'
        'destination_canonical_service="iris",destination_canonical_revision="iris-00002"'
    )
    buckets = f'{selector},le=~"250|250[.]0|[+]Inf"'
    assert measurement.queries == [
        f"istio_requests_total{{{selector}}}",
        f"last_over_time(istio_requests_total{{{selector}}}[60000ms])",
        f"istio_request_duration_milliseconds_bucket{{{buckets}}}",
        f"last_over_time(istio_request_duration_milliseconds_bucket{{{buckets}}}[60000ms])",
    ]
    assert measurement.query_times == [at(10), at(70), at(10), at(70)]
    assert mesh.prometheus.calls == list(
        zip(measurement.queries, measurement.query_times, strict=True)
    )
    assert measurement.counts == ArmCounts()  # nothing served yet: zero, not an error
    assert measurement.source == "fake Prometheus"


def test_counts_cover_exactly_the_window_by_code_with_errors_and_slow_requests() -> None:
    mesh = Mesh()
    mesh.traffic.serve(NS, SVC, STABLE, count=40)  # before the window: not counted
    mesh.tick(10)
    mesh.traffic.serve(NS, SVC, STABLE, count=7, duration_ms=30)
    mesh.traffic.serve(NS, SVC, STABLE, count=2, duration_ms=900)  # slower than 250 ms
    mesh.traffic.serve(NS, SVC, STABLE, code=503, count=3, duration_ms=251)
    mesh.traffic.serve(NS, SVC, STABLE, code=404, count=1)  # a client error, not ours
    mesh.tick(5)
    mesh.traffic.serve(NS, SVC, STABLE, count=100)  # after the window: not counted
    mesh.tick(5)

    measurement = mesh.observer.measure(NS, SVC, STABLE, at(10), at(15), 250)

    assert measurement.counts == ArmCounts(requests=13, errors=3, slow=5)
    assert measurement.raw == {"200": 9, "404": 1, "503": 3}
    assert measurement.resets == 0
    # The histogram gives the slow share for any bucket bound.
    assert mesh.measure(STABLE, 10, 15, threshold=1000).slow == 0
    assert mesh.measure(STABLE, 10, 15, threshold=25).slow == 12  # the 404 took 10 ms
    assert mesh.measure(STABLE, 0, 20) == ArmCounts(requests=153, errors=3, slow=5)


def test_a_series_that_appears_inside_the_window_counts_from_zero() -> None:
    # A candidate's first 5xx creates its series mid-window; increase() would drop it (one sample).
    mesh = Mesh()
    mesh.tick(3)
    mesh.traffic.serve(NS, SVC, CAND, code=500, count=2)
    mesh.tick(1)
    assert mesh.measure(CAND, 0, 10) == ArmCounts(requests=2, errors=2, slow=0)


def test_a_counter_reset_counts_what_came_after_it_and_is_reported() -> None:
    mesh = Mesh()
    mesh.traffic.serve(NS, SVC, STABLE, count=50)
    mesh.tick(2)
    mesh.traffic.serve(NS, SVC, STABLE, count=5)
    mesh.tick(1)
    mesh.traffic.restart()  # the proxy restarted: 55 -> 0
    mesh.traffic.serve(NS, SVC, STABLE, count=4)
    mesh.tick(2)

    measurement = mesh.observer.measure(NS, SVC, STABLE, at(2), at(5), 250)

    # 5 before the restart are lost (a lower bound, never negative); the reset is on record.
    assert measurement.counts.requests == 4
    assert measurement.resets == 3  # the counter and both bucket series (le=250 and +Inf)


def test_a_series_that_goes_stale_inside_the_window_keeps_its_last_value() -> None:
    mesh = Mesh()
    other = IstioTraffic(mesh.prometheus, instance="pod-b:15020")
    mesh.traffic.serve(NS, SVC, CAND, count=1)
    other.serve(NS, SVC, CAND, count=1)
    mesh.tick(1)
    other.scrape(at(1))
    other.serve(NS, SVC, CAND, count=6)
    other.scrape(at(2))  # pod b's last scrape: it scaled away afterwards
    mesh.tick(30)

    # Two pods, summed; pod b's series vanished at 2 s but its increase still counts.
    assert mesh.measure(CAND, 1, 31) == ArmCounts(requests=6)
    assert mesh.measure(CAND, 0, 31) == ArmCounts(requests=8)


def test_only_the_named_revision_service_and_namespace_are_counted() -> None:
    mesh = Mesh()
    mesh.traffic.serve(NS, SVC, CAND, count=3)
    mesh.traffic.serve(NS, SVC, STABLE, count=30)
    mesh.traffic.serve("staging", SVC, CAND, count=300)
    mesh.traffic.serve(NS, "iris-shadow", CAND, count=3000)
    mesh.tick(2)
    assert mesh.measure(CAND, 0, 2) == ArmCounts(requests=3)
    assert mesh.measure(STABLE, 0, 2) == ArmCounts(requests=30)


def test_the_revision_label_is_a_setting() -> None:
    mesh = Mesh(revision_label="destination_workload")
    mesh.traffic.serve(NS, SVC, CAND, count=4)
    mesh.tick(1)
    measurement = mesh.observer.measure(NS, SVC, CAND, at(0), at(1), 250)
    assert measurement.counts.requests == 4
    assert 'destination_workload="iris-00002"' in measurement.queries[0]
    assert "destination_canonical_revision" not in measurement.queries[0]


def test_label_values_are_quoted_as_promql_strings() -> None:
    observer = IstioObserver(FakeProvider(), reporter=None, service_label=None)
    assert observer.selector('n"s', "ignored", "a\\b") == (
        'destination_service_namespace="n\\"s",destination_canonical_revision="a\\\\b"'
    )
    with pytest.raises(ValueError, match="label name"):
        IstioObserver(FakeProvider(), revision_label="not-a-label")
    with pytest.raises(ValueError, match="regular expression"):
        IstioObserver(FakeProvider(), error_codes="5(")


def test_the_threshold_must_be_a_bucket_bound() -> None:
    assert validate_latency_threshold(250) == 250.0
    assert validate_latency_threshold(0.5) == 0.5
    assert 250 in ISTIO_DURATION_BUCKETS_MS and len(ISTIO_DURATION_BUCKETS_MS) == 19
    with pytest.raises(ValueError, match=r"300 ms is not a bucket bound.*: 0\.5, 1, 5, .*3600000"):
        validate_latency_threshold(300)
    mesh = Mesh()
    with pytest.raises(MetricsQueryError, match="300 ms is not a bucket bound"):
        mesh.measure(CAND, 0, 1, threshold=300)
    assert mesh.prometheus.calls == []  # refused before asking anything


def test_a_histogram_without_the_threshold_bucket_is_a_query_error() -> None:
    prometheus = FakeProvider()
    traffic = IstioTraffic(prometheus, buckets=(100, 1000))
    traffic.serve(NS, SVC, CAND)
    traffic.scrape(at(1))
    observer = IstioObserver(prometheus)  # believes in Istio's default buckets
    with pytest.raises(MetricsQueryError, match="has no bucket le=250"):
        observer.measure(NS, SVC, CAND, at(0), at(2), 250)
    assert IstioObserver(prometheus, buckets=(100, 1000)).measure(
        NS, SVC, CAND, at(0), at(2), 100
    ).counts == ArmCounts(requests=1)


def test_float_le_values_as_prometheus_3_writes_them_are_matched() -> None:
    labels = {"reporter": "destination", "destination_service_namespace": NS}
    labels |= {"destination_canonical_service": SVC, "destination_canonical_revision": CAND}
    prometheus = FakeProvider()
    for le, value in (("250.0", 7), ("+Inf", 10)):
        prometheus.add(
            "istio_request_duration_milliseconds_bucket", {**labels, "le": le}, at(1), value
        )
    prometheus.add("istio_requests_total", {**labels, "response_code": "200"}, at(1), 10)
    counts = IstioObserver(prometheus).measure(NS, SVC, CAND, at(0), at(1), 250).counts
    assert counts == ArmCounts(requests=10, slow=3)


def test_errors_are_never_no_data() -> None:
    mesh = Mesh()
    mesh.prometheus.down = "connection refused"
    with pytest.raises(MetricsUnavailable, match="connection refused"):
        mesh.measure(CAND, 0, 1)
    with pytest.raises(MetricsQueryError, match="empty measurement window"):
        mesh.measure(CAND, 5, 5)
    weird = FakeProvider({"istio_requests_total{x}": []}, description="weird")
    with pytest.raises(MetricsQueryError, match="evaluates only selectors"):
        weird.query("sum(rate(x[1m]))", at(0))
    negative = FakeProvider(lambda promql, when: [Sample({"response_code": "200"}, -1.0)])
    with pytest.raises(MetricsQueryError, match="no counter can have"):
        IstioObserver(negative).measure(NS, SVC, CAND, at(0), at(1), 250)


def test_no_metrics_backend_measures_nothing_and_says_so() -> None:
    measurement = IstioObserver(NoMetrics()).measure(NS, SVC, CAND, at(0), at(60), 250)
    assert measurement.counts == ArmCounts()
    assert "HEKATON_METRICS_PROVIDER=none" in measurement.source
    assert NoMetrics().online()


def test_the_decision_log_form_has_counts_codes_window_and_queries() -> None:
    mesh = Mesh()
    mesh.traffic.serve(NS, SVC, CAND, code=500)
    mesh.tick(1)
    logged = mesh.observer.measure(NS, SVC, CAND, at(0), at(1), 250).as_dict()
    assert logged["requests"] == 1 and logged["errors"] == 1 and logged["slow"] == 0
    assert logged["by_code"] == {"500": 1} and logged["resets"] == 0
    assert logged["window"] == {"start": at(0).isoformat(), "end": at(1).isoformat()}
    assert logged["queries"][1]["at"] == at(1).isoformat()
    assert logged["queries"][1]["promql"].startswith("last_over_time(istio_requests_total{")
