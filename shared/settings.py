"""Typed settings, loaded once from the environment at cold start and passed into every handler."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import PermanentError

_LABEL_NAME = "^[a-zA-Z_][a-zA-Z0-9_]*$"


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class Settings(BaseModel):
    """Everything a function needs to know about where it runs."""

    model_config = ConfigDict(frozen=True)

    project: str = Field(min_length=1)
    # None: use the in-cluster service account or the default kubeconfig (GKE).
    kube_server: str | None = None
    # Base64 PEM of the cluster CA for an https kube_server (GKE: masterAuth.clusterCaCertificate).
    kube_ca_data: str | None = None
    # When set, requests to revision URLs (e.g. http://candidate-iris.models.example.com) are sent to
    # this address with the URL's host in the Host header: the local gateway, or an internal LB in GCP.
    ingress_url: str | None = None
    # How often the readiness wait re-checks a revision (the tick re-emits the wait at this pace).
    ready_poll_seconds: float = Field(default=2.0, gt=0)
    # An eagerly published next step that has not run after this long is re-emitted by the sweep.
    lost_event_grace_seconds: float = Field(default=60.0, gt=0)
    # For this long after a service's record last changed, the tick checks that its idle route is
    # what hekaton set, and repairs it: a write that was in flight when its step lost a race (or
    # timed out) can land after the rollout ended. Longer than any step function's timeout.
    route_repair_seconds: float = Field(default=900.0, gt=0)
    # Within that window, a route found right is read again only after this long (unless its
    # record changed): a tick every 0.5 s (local) must not read every recent service each time.
    route_recheck_seconds: float = Field(default=30.0, ge=0)
    # Publisher batching: the time a message may wait for company (low: latency matters more).
    publish_max_latency_seconds: float = Field(default=0.005, ge=0)
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    # Bounds on one Firestore call (its retries included) and one Kubernetes API request: an
    # unreachable or stalled dependency becomes a retryable error this fast, never a hang.
    firestore_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    kube_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    # Bound on each dependency check of /healthz (kept short: a health check must answer fast).
    health_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    log_format: str = Field(default="json", pattern="^(json|text)$")
    # Where metric analysis queries: a Prometheus query API, or no backend at all (no evidence).
    metrics_provider: Literal["prometheus", "none"] = "prometheus"
    # Where a spec's `auth:` is enforced: Istio security policies, or nowhere (auth refused).
    policies_provider: Literal["istio", "none"] = "istio"
    # Base URL of the Prometheus HTTP API (…/api/v1/query is appended); required for `prometheus`.
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    # Which Istio metric labels carry the Knative revision and service (depends on the mesh set-up).
    metrics_revision_label: str = Field(
        default="destination_canonical_revision", pattern=_LABEL_NAME
    )
    metrics_service_label: str = Field(default="destination_canonical_service", pattern=_LABEL_NAME)
    # Bound on one metrics query (our HTTP timeout and Prometheus's evaluation timeout).
    metrics_timeout_seconds: float = Field(default=5.0, gt=0)
    # Who may call the control and read APIs: a JWT (RS256) from this issuer, signed by a key of
    # this JWKS (an https URL or a file path), for one of these audiences (in GCP: each function's
    # URL; Google ID tokens), whose principal (email, else sub) matches one of the patterns
    # (fnmatch, e.g. `*@example.com`). No audience or no pattern: every call is refused.
    auth_issuer: str = "https://accounts.google.com"
    auth_jwks: str = "https://www.googleapis.com/oauth2/v3/certs"
    auth_audiences: tuple[str, ...] = ()
    allowed_principals: tuple[str, ...] = ()

    # The token hekaton's own requests to model APIs carry (validation, golden set, top-up):
    # none; a Google ID token of the function's service account (GCP); or one minted with this
    # RS256 key (PEM path; a `kid` file beside it names the key), issuer and subject (local stack).
    model_token: Literal["none", "google", "key"] = "none"
    model_token_key: str | None = None
    model_token_issuer: str = "hekaton-local"
    model_token_subject: str = "hekaton@hekaton.local"

    # Fault injection (local stack only; empty in production): crash points of the step engine
    # armed with these probabilities (`after_commit:0.05,...`, shared/crashpoints.py), one seeded
    # stream per worker process.
    crash_points: dict[str, float] = Field(default_factory=dict)
    crash_seed: int = 0
    # How a future due time wakes its step (shared/timers): a named Cloud Tasks task in this queue
    # that publishes the step event with an OAuth token of this service account, or only the tick.
    timers: Literal["cloudtasks", "tick"] = "tick"
    tasks_queue: str | None = Field(
        default=None, pattern=r"^projects/[^/]+/locations/[^/]+/queues/[A-Za-z0-9-]+$"
    )
    tasks_service_account: str | None = Field(default=None, pattern=r"^\S+@\S+$")
    tasks_emulator_host: str | None = Field(default=None, pattern=r"^[^/\s]+:\d+$")  # local only
    # Where a task publishes (the Pub/Sub REST API; locally the emulator's): `/v1/...:publish` is appended.
    pubsub_publish_url: str = Field(
        default="https://pubsub.googleapis.com", pattern=r"^https?://\S+$"
    )

    @field_validator("auth_audiences", "allowed_principals", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("auth_jwks")
    @classmethod
    def _jwks_over_tls(cls, value: str) -> str:
        # Keys fetched in the clear could be swapped on the way: anyone could then mint tokens.
        parts = urlsplit(value)
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ValueError(
                f"HEKATON_AUTH_JWKS {value!r} is plain http: use https (http is allowed on "
                "loopback only, for local tests) or a file path"
            )
        return value

    @field_validator("crash_points", mode="before")
    @classmethod
    def _crash_points(cls, value: object) -> object:
        if isinstance(value, str):
            from shared.crashpoints import parse

            return parse(value)
        return value

    @model_validator(mode="after")
    def _timers_complete(self) -> Settings:
        if self.timers == "cloudtasks":
            if not self.tasks_queue:
                raise ValueError(
                    "HEKATON_TASKS_QUEUE (projects/P/locations/R/queues/hekaton-timers) is "
                    "required with HEKATON_TIMERS=cloudtasks"
                )
            if not self.tasks_service_account and not self.tasks_emulator_host:
                raise ValueError(
                    "HEKATON_TASKS_SERVICE_ACCOUNT (the email whose OAuth token a task carries) "
                    "is required with HEKATON_TIMERS=cloudtasks"
                )
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read HEKATON_* (and GOOGLE_CLOUD_PROJECT) variables; raise PermanentError naming a bad one."""
        env = os.environ if env is None else env
        raw: dict[str, object] = {
            "project": env.get("HEKATON_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or "",
        }
        optional = {
            "kube_server": "HEKATON_KUBE_SERVER",
            "kube_ca_data": "HEKATON_KUBE_CA_DATA",
            "ingress_url": "HEKATON_INGRESS_URL",
            "ready_poll_seconds": "HEKATON_READY_POLL_SECONDS",
            "lost_event_grace_seconds": "HEKATON_LOST_EVENT_GRACE_SECONDS",
            "route_repair_seconds": "HEKATON_ROUTE_REPAIR_SECONDS",
            "route_recheck_seconds": "HEKATON_ROUTE_RECHECK_SECONDS",
            "publish_max_latency_seconds": "HEKATON_PUBLISH_MAX_LATENCY_SECONDS",
            "http_timeout_seconds": "HEKATON_HTTP_TIMEOUT_SECONDS",
            "firestore_timeout_seconds": "HEKATON_FIRESTORE_TIMEOUT_SECONDS",
            "kube_timeout_seconds": "HEKATON_KUBE_TIMEOUT_SECONDS",
            "health_timeout_seconds": "HEKATON_HEALTH_TIMEOUT_SECONDS",
            "log_format": "HEKATON_LOG_FORMAT",
            "metrics_provider": "HEKATON_METRICS_PROVIDER",
            "prometheus_url": "HEKATON_PROMETHEUS_URL",
            "policies_provider": "HEKATON_POLICIES_PROVIDER",
            "metrics_revision_label": "HEKATON_METRICS_REVISION_LABEL",
            "metrics_service_label": "HEKATON_METRICS_SERVICE_LABEL",
            "metrics_timeout_seconds": "HEKATON_METRICS_TIMEOUT_SECONDS",
            "auth_issuer": "HEKATON_AUTH_ISSUER",
            "auth_jwks": "HEKATON_AUTH_JWKS",
            "auth_audiences": "HEKATON_AUTH_AUDIENCES",
            "allowed_principals": "HEKATON_ALLOWED_PRINCIPALS",
            "model_token": "HEKATON_MODEL_TOKEN",
            "model_token_key": "HEKATON_MODEL_TOKEN_KEY",
            "model_token_issuer": "HEKATON_MODEL_TOKEN_ISSUER",
            "model_token_subject": "HEKATON_MODEL_TOKEN_SUBJECT",
            "crash_points": "HEKATON_CRASH_POINTS",
            "crash_seed": "HEKATON_CRASH_SEED",
            "timers": "HEKATON_TIMERS",
            "tasks_queue": "HEKATON_TASKS_QUEUE",
            "tasks_service_account": "HEKATON_TASKS_SERVICE_ACCOUNT",
            "tasks_emulator_host": "HEKATON_TASKS_EMULATOR_HOST",
            "pubsub_publish_url": "HEKATON_PUBSUB_PUBLISH_URL",
        }
        for field, variable in optional.items():
            if env.get(variable):
                raw[field] = env[variable]
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                (f"{_variable_for(str(err['loc'][0]), optional)}: " if err["loc"] else "")
                + err["msg"]
                for err in exc.errors()
            )
            raise PermanentError(f"invalid hekaton settings: {problems}") from exc


def _variable_for(field: str, optional: Mapping[str, str]) -> str:
    if field == "project":
        return "HEKATON_PROJECT or GOOGLE_CLOUD_PROJECT"
    return optional.get(field, field)
