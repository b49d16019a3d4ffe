"""Typed settings from the environment: defaults, overrides, and errors naming the variable."""

from __future__ import annotations

import pytest

from shared.errors import PermanentError
from shared.settings import Settings


def test_defaults_need_only_a_project() -> None:
    """A project is enough; the rest has production defaults."""
    settings = Settings.from_env({"GOOGLE_CLOUD_PROJECT": "acme"})
    assert settings.project == "acme"
    assert settings.kube_server is None and settings.ingress_url is None
    assert settings.lost_event_grace_seconds == 60.0
    assert settings.log_format == "json"


def test_every_variable_is_read() -> None:
    """Each HEKATON_* variable lands in its field, converted to its type; HEKATON_PROJECT wins."""
    settings = Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": "ignored",
            "HEKATON_PROJECT": "local",
            "HEKATON_KUBE_SERVER": "http://127.0.0.1:6443",
            "HEKATON_KUBE_CA_DATA": "LS0tLS1CRUdJTg==",
            "HEKATON_INGRESS_URL": "http://127.0.0.1:8080",
            "HEKATON_READY_POLL_SECONDS": "0.5",
            "HEKATON_LOST_EVENT_GRACE_SECONDS": "3",
            "HEKATON_ROUTE_REPAIR_SECONDS": "120",
            "HEKATON_ROUTE_RECHECK_SECONDS": "10",
            "HEKATON_PUBLISH_MAX_LATENCY_SECONDS": "0",
            "HEKATON_HTTP_TIMEOUT_SECONDS": "2.5",
            "HEKATON_FIRESTORE_TIMEOUT_SECONDS": "1.5",
            "HEKATON_KUBE_TIMEOUT_SECONDS": "3",
            "HEKATON_HEALTH_TIMEOUT_SECONDS": "0.5",
            "HEKATON_LOG_FORMAT": "text",
            "HEKATON_METRICS_PROVIDER": "none",
            "HEKATON_PROMETHEUS_URL": "http://127.0.0.1:9090",
            "HEKATON_METRICS_REVISION_LABEL": "destination_workload",
            "HEKATON_METRICS_SERVICE_LABEL": "destination_service_name",
            "HEKATON_METRICS_TIMEOUT_SECONDS": "1.5",
            "HEKATON_AUTH_ISSUER": "hekaton-local",
            "HEKATON_AUTH_JWKS": "/tmp/jwks.json",
            "HEKATON_AUTH_AUDIENCES": "https://a.run.app, https://b.run.app",
            "HEKATON_ALLOWED_PRINCIPALS": "*@example.com,ops@x.org",
            "HEKATON_POLICIES_PROVIDER": "none",
            "HEKATON_MODEL_TOKEN": "key",
            "HEKATON_MODEL_TOKEN_KEY": "/tmp/signing-key.pem",
            "HEKATON_MODEL_TOKEN_ISSUER": "me",
            "HEKATON_MODEL_TOKEN_SUBJECT": "bot@me",
            "HEKATON_CRASH_POINTS": "after_kube:0.1,before_publish:0.2",
            "HEKATON_CRASH_SEED": "7",
            "HEKATON_TIMERS": "cloudtasks",
            "HEKATON_TASKS_QUEUE": "projects/local/locations/here/queues/hekaton-timers",
            "HEKATON_TASKS_SERVICE_ACCOUNT": "steps@local.iam.gserviceaccount.com",
            "HEKATON_TASKS_EMULATOR_HOST": "127.0.0.1:8123",
            "HEKATON_PUBSUB_PUBLISH_URL": "http://127.0.0.1:8085",
        }
    )
    assert settings == Settings(
        project="local",
        kube_server="http://127.0.0.1:6443",
        kube_ca_data="LS0tLS1CRUdJTg==",
        ingress_url="http://127.0.0.1:8080",
        ready_poll_seconds=0.5,
        lost_event_grace_seconds=3,
        route_repair_seconds=120,
        route_recheck_seconds=10,
        publish_max_latency_seconds=0,
        http_timeout_seconds=2.5,
        firestore_timeout_seconds=1.5,
        kube_timeout_seconds=3,
        health_timeout_seconds=0.5,
        log_format="text",
        metrics_provider="none",
        prometheus_url="http://127.0.0.1:9090",
        metrics_revision_label="destination_workload",
        metrics_service_label="destination_service_name",
        metrics_timeout_seconds=1.5,
        auth_issuer="hekaton-local",
        auth_jwks="/tmp/jwks.json",
        auth_audiences=("https://a.run.app", "https://b.run.app"),
        allowed_principals=("*@example.com", "ops@x.org"),
        policies_provider="none",
        model_token="key",
        model_token_key="/tmp/signing-key.pem",
        model_token_issuer="me",
        model_token_subject="bot@me",
        crash_points={"after_kube": 0.1, "before_publish": 0.2},
        crash_seed=7,
        timers="cloudtasks",
        tasks_queue="projects/local/locations/here/queues/hekaton-timers",
        tasks_service_account="steps@local.iam.gserviceaccount.com",
        tasks_emulator_host="127.0.0.1:8123",
        pubsub_publish_url="http://127.0.0.1:8085",
    )
    # Every field was set from its variable (a new field without a variable would keep its default).
    defaults = Settings(project="default")
    assert [f for f in Settings.model_fields if getattr(settings, f) == getattr(defaults, f)] == []


def test_empty_variables_mean_default() -> None:
    """An exported-but-empty variable does not override the default."""
    settings = Settings.from_env({"HEKATON_PROJECT": "p", "HEKATON_READY_POLL_SECONDS": ""})
    assert settings.ready_poll_seconds == 2.0


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HEKATON_READY_POLL_SECONDS", "soon", "valid number"),
        ("HEKATON_READY_POLL_SECONDS", "0", "greater than 0"),
        ("HEKATON_LOST_EVENT_GRACE_SECONDS", "-5", "greater than 0"),
        ("HEKATON_HTTP_TIMEOUT_SECONDS", "ten", "valid number"),
        ("HEKATON_PUBLISH_MAX_LATENCY_SECONDS", "-1", "greater than or equal to 0"),
        ("HEKATON_LOG_FORMAT", "xml", "match pattern"),
        ("HEKATON_METRICS_PROVIDER", "graphite", "'prometheus' or 'none'"),
        ("HEKATON_PROMETHEUS_URL", "prometheus:9090", "match pattern"),
        ("HEKATON_METRICS_REVISION_LABEL", "canonical-revision", "match pattern"),
        ("HEKATON_METRICS_TIMEOUT_SECONDS", "0", "greater than 0"),
        ("HEKATON_FIRESTORE_TIMEOUT_SECONDS", "0", "greater than 0"),
        ("HEKATON_KUBE_TIMEOUT_SECONDS", "forever", "valid number"),
        ("HEKATON_HEALTH_TIMEOUT_SECONDS", "600", "less than or equal to 60"),
        ("HEKATON_AUTH_JWKS", "http://keys.example.com/jwks.json", "plain http: use https"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str, problem: str) -> None:
    """A bad value is a permanent error naming the environment variable, not the field."""
    with pytest.raises(PermanentError) as caught:
        Settings.from_env({"HEKATON_PROJECT": "p", variable: value})
    message = str(caught.value)
    assert f"{variable}: " in message and problem in message


def test_missing_project_names_both_variables() -> None:
    """Without a project the error says which variables could provide it."""
    with pytest.raises(PermanentError, match="HEKATON_PROJECT or GOOGLE_CLOUD_PROJECT"):
        Settings.from_env({})


def test_settings_are_frozen() -> None:
    """Settings are loaded once and never changed by a handler."""
    settings = Settings(project="p")
    with pytest.raises(ValueError, match="frozen"):
        setattr(settings, "project", "q")  # noqa: B010 (the assignment itself is under test)


def test_dependency_timeouts_default_to_a_few_seconds() -> None:
    """Firestore and Kubernetes calls, and each /healthz check, are bounded by default."""
    default = Settings(project="p")
    assert (default.firestore_timeout_seconds, default.kube_timeout_seconds) == (5.0, 5.0)
    assert default.health_timeout_seconds == 2.0


@pytest.mark.parametrize(
    "jwks",
    ["https://www.googleapis.com/oauth2/v3/certs", "http://127.0.0.1:8123/jwks", "/srv/jwks.json"],
)
def test_the_api_keys_come_over_tls_a_loopback_or_a_file(jwks: str) -> None:
    assert Settings.from_env({"HEKATON_PROJECT": "p", "HEKATON_AUTH_JWKS": jwks}).auth_jwks == jwks
