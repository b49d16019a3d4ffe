"""The dependencies a step needs, built lazily so each function imports and connects only what it uses."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from shared.clock import Clock, SystemClock
from shared.settings import Settings

if TYPE_CHECKING:
    import httpx
    from kubernetes.client import ApiClient

    from shared.auth.model_tokens import ModelTokens
    from shared.health import Probe
    from shared.metrics.observers import Observer
    from shared.policies import PoliciesProvider
    from shared.publisher import Publisher
    from shared.serving import ServingProvider
    from shared.store import Store
    from shared.timers.protocol import Timers


class Deps:
    """Settings plus lazily created clients; tests pass fakes for any of them."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        serving: ServingProvider | None = None,
        publisher: Publisher | None = None,
        clock: Clock | None = None,
        http: httpx.Client | None = None,
        metrics: Observer | None = None,
        policies: PoliciesProvider | None = None,
        probes: Sequence[Probe] | None = None,
        timers: Timers | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        # What this instance's tick last found of each idle service's route: (the record's
        # updated_at, when its route was found right). A cache only: a new instance checks all.
        self.routes_found_right: dict[str, tuple[Any, Any]] = {}
        overrides: dict[str, Any] = {
            "store": store,
            "serving": serving,
            "publisher": publisher,
            "http": http,
            "metrics": metrics,
            "policies": policies,
            "probes": probes,
            "timers": timers,
        }
        for name, value in overrides.items():
            if value is not None:
                self.__dict__[name] = value  # pre-fills the cached_property

    @cached_property
    def store(self) -> Store:
        """Firestore-backed store."""
        from shared.firestore_store import FirestoreStore

        return FirestoreStore.for_project(
            self.settings.project, timeout_seconds=self.settings.firestore_timeout_seconds
        )

    @cached_property
    def serving(self) -> ServingProvider:
        """Knative Serving through the Kubernetes API."""
        from shared.knative import KnativeServing

        return KnativeServing(self.kube_api)

    @cached_property
    def kube_api(self) -> ApiClient:
        """One Kubernetes API client (bounded by HEKATON_KUBE_TIMEOUT_SECONDS) for serving and policies."""
        from shared.knative import api_client

        s = self.settings
        return api_client(s.kube_server, s.kube_ca_data, timeout_seconds=s.kube_timeout_seconds)

    @cached_property
    def policies(self) -> PoliciesProvider:
        """Istio security policies (endpoint auth) through the Kubernetes API, or none."""
        if self.settings.policies_provider == "none":
            from shared.policies import NoPolicies

            return NoPolicies()
        from shared.istio import IstioPolicies

        return IstioPolicies(self.kube_api)

    @cached_property
    def model_tokens(self) -> ModelTokens:
        """The token hekaton's own requests to model APIs carry (validation, golden set, top-up)."""
        from shared.auth.model_tokens import ModelTokens

        return ModelTokens(self.settings)

    @cached_property
    def publisher(self) -> Publisher:
        """Pub/Sub publisher."""
        from shared.publisher import PubSubPublisher

        return PubSubPublisher(self.settings.project, self.settings.publish_max_latency_seconds)

    @cached_property
    def timers(self) -> Timers:
        """What wakes a step at its future due time (Cloud Tasks, or only the tick)."""
        from shared.timers.factory import timers_from_settings

        return timers_from_settings(self.settings)

    @cached_property
    def http(self) -> httpx.Client:
        """HTTP client for smoke requests."""
        import httpx

        return httpx.Client(timeout=self.settings.http_timeout_seconds, follow_redirects=False)

    @cached_property
    def metrics(self) -> Observer:
        """What a revision served over a window (Istio metrics from the configured provider)."""
        from shared.metrics.factory import metrics_observer

        return metrics_observer(self.settings, self.http)

    @cached_property
    def probes(self) -> Sequence[Probe]:
        """/healthz's dependency checks (Firestore, the Kubernetes API), each with a short timeout."""
        from shared.health import FirestoreProbe, KubeProbe

        s = self.settings
        timeout = s.health_timeout_seconds
        return (
            FirestoreProbe(s.project, timeout),
            KubeProbe(s.kube_server, s.kube_ca_data, timeout),
        )
