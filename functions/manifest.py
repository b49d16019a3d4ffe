"""The one source of truth for hekaton's wiring: functions, triggers, delivery, queue, identities, RBAC.

Read by deploy.sh (through `functions.manifest_shell`), by the local stack (`local/functions_stack.py`,
`local/pubsub_wiring.py`) and by the tests, so what runs locally, what gets deployed and what is
tested cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.steps import (
    DEAD_LETTER_TOPIC,
    REGISTRY_TOPIC,
    ROLLBACK_TOPIC,
    STEP_TOPICS,
    TICK_TOPIC,
    StepType,
)
from events.transitions import EVENTS_TOPIC
from shared.timers.naming import QUEUE_ID

# Identities (keys of SERVICE_ACCOUNTS).
STEPS = "steps"
API = "api"
SCHEDULER = "scheduler"
BUILD = "build"

# Where the notify function's webhook URL lives in GCP (Secret Manager): a secret, never an env value.
WEBHOOK_URL_ENV = "HEKATON_NOTIFY_WEBHOOK_URL"
WEBHOOK_SECRET = "hekaton-webhook-url"


@dataclass(frozen=True)
class FunctionDef:
    """One deployable function: `functions-framework --source <source> --target <entry_point>`."""

    name: str
    source: str  # path of the module, relative to the repository root
    entry_point: str
    trigger_topic: str | None = None  # None: an HTTP function
    memory: str = "256Mi"
    cpu: str = "0.167"  # a concurrency above 1 needs at least one whole CPU
    timeout_seconds: int = 120  # event functions: at most 540 s
    concurrency: int = 1  # requests one instance serves at once
    # Event functions only hear Eventarc (internal); the APIs are called by people from anywhere,
    # behind IAM (no unauthenticated invocation) and hekaton's own token check.
    ingress: str = "internal-only"
    account: str = STEPS  # which identity (SERVICE_ACCOUNTS key) it runs as
    # Environment variable -> Secret Manager secret id, mounted with --set-secrets (version latest).
    secrets: tuple[tuple[str, str], ...] = ()

    @property
    def http(self) -> bool:
        """True for HTTP-triggered functions."""
        return self.trigger_topic is None

    @property
    def dead_letters(self) -> bool:
        """True when the function's subscription dead-letters (all but the dead-letter recorder's)."""
        return self.trigger_topic not in (None, DEAD_LETTER_TOPIC)

    @property
    def retry(self) -> bool:
        """Event functions retry: a raised (retryable) error makes Pub/Sub redeliver."""
        return not self.http

    @property
    def deployed_name(self) -> str:
        """The Cloud Functions name in GCP."""
        return f"hekaton-{self.name}"


def _api_function(name: str) -> FunctionDef:
    """An HTTP API: several requests at once per instance (so a whole CPU), reachable by people."""
    return FunctionDef(
        name,
        f"functions/{name}.py",
        name,
        memory="512Mi",
        cpu="1",
        timeout_seconds=60,
        concurrency=8,
        ingress="all",
        account=API,
    )


FUNCTIONS: tuple[FunctionDef, ...] = (
    FunctionDef("ingest", "functions/ingest.py", "ingest", REGISTRY_TOPIC),
    FunctionDef("deploy", "functions/deploy.py", "deploy", STEP_TOPICS[StepType.DEPLOY]),
    FunctionDef(
        "wait-ready", "functions/wait_ready.py", "wait_ready", STEP_TOPICS[StepType.WAIT_READY]
    ),
    # Smoke requests and a golden replay against two revisions take longer than one API call.
    FunctionDef(
        "validate",
        "functions/validate.py",
        "validate",
        STEP_TOPICS[StepType.VALIDATE],
        memory="512Mi",
        timeout_seconds=300,
    ),
    FunctionDef("shift", "functions/shift.py", "shift", STEP_TOPICS[StepType.SHIFT]),
    FunctionDef("promote", "functions/promote.py", "promote", STEP_TOPICS[StepType.PROMOTE]),
    FunctionDef("tick", "functions/tick.py", "tick", TICK_TOPIC, timeout_seconds=300),
    FunctionDef("rollback", "functions/rollback.py", "rollback", ROLLBACK_TOPIC),
    # The optional webhook sink of the transition events (does nothing without its URL).
    FunctionDef(
        "notify",
        "functions/notify.py",
        "notify",
        EVENTS_TOPIC,
        secrets=((WEBHOOK_URL_ENV, WEBHOOK_SECRET),),
    ),
    # Keeps every dead letter in Firestore for `hekaton dlq list` and `hekaton dlq replay`.
    FunctionDef("dead-letter", "functions/dead_letter.py", "dead_letter", DEAD_LETTER_TOPIC),
    _api_function("status"),
    _api_function("control"),
)

# Topics that exist without a function of ours publishing to them first.
EXTRA_TOPICS: tuple[str, ...] = (DEAD_LETTER_TOPIC,)
# Dead letters are kept here (a topic without a subscription drops what it receives).
DEAD_LETTER_INBOX = "hekaton-dead-letter-inbox"


@dataclass(frozen=True)
class DeliveryPolicy:
    """Pub/Sub retry and dead-lettering of every trigger subscription."""

    max_delivery_attempts: int = 5  # Pub/Sub allows 5-100
    min_backoff_seconds: int = 10  # Pub/Sub allows 0-600
    max_backoff_seconds: int = 600


DELIVERY = DeliveryPolicy()


@dataclass(frozen=True)
class QueueDef:
    """The Cloud Tasks queue holding due-time wake-ups (named tasks, one per rollout and sequence)."""

    name: str = QUEUE_ID  # the id the timers code schedules into (shared/timers/naming.py)
    max_attempts: int = 10
    min_backoff_seconds: int = 1
    max_backoff_seconds: int = 60


QUEUE = QueueDef()


@dataclass(frozen=True)
class ServiceAccountDef:
    """One identity hekaton runs as, with exactly the rights its functions use."""

    key: str
    account_id: str
    description: str
    project_roles: tuple[
        str, ...
    ] = ()  # bound on the project (only where no finer resource exists)
    publishes_to: tuple[str, ...] = ()  # roles/pubsub.publisher on these topics only
    kubernetes: bool = False  # bound by the Role in each model namespace (GKE access)
    schedules_timers: bool = (
        False  # roles/cloudtasks.enqueuer on the queue + actAs the task identity
    )

    def email(self, project: str) -> str:
        """The account's email in `project`."""
        return f"{self.account_id}@{project}.iam.gserviceaccount.com"


_STEP_TOPICS = tuple(sorted(STEP_TOPICS.values()))
# Where a dead letter's replay republishes: the trigger topic of every function that dead-letters.
_REPLAY_TOPICS = tuple(
    sorted({f.trigger_topic for f in FUNCTIONS if f.dead_letters and f.trigger_topic})
)
# Firestore has no finer IAM than the project; GKE needs `container.clusters.get` to hand out
# credentials, and Kubernetes RBAC (the Role below) decides everything inside the cluster.
_ENGINE_PROJECT_ROLES = ("roles/datastore.user", "roles/container.clusterViewer")

SERVICE_ACCOUNTS: tuple[ServiceAccountDef, ...] = (
    ServiceAccountDef(
        STEPS,
        "hekaton-steps",
        "hekaton step functions (Pub/Sub triggered)",
        project_roles=_ENGINE_PROJECT_ROLES,
        publishes_to=(*_STEP_TOPICS, EVENTS_TOPIC),
        kubernetes=True,
        schedules_timers=True,
    ),
    ServiceAccountDef(
        API,
        "hekaton-api",
        "hekaton status and control APIs",
        project_roles=_ENGINE_PROJECT_ROLES,
        # Operator commands run through the same engine: next steps, rollbacks, transition events;
        # a dead letter's replay goes back to its original topic (gcr and hekaton-tick included).
        publishes_to=tuple(sorted({*_STEP_TOPICS, ROLLBACK_TOPIC, EVENTS_TOPIC, *_REPLAY_TOPICS})),
        kubernetes=True,
        schedules_timers=True,
    ),
    ServiceAccountDef(
        SCHEDULER,
        "hekaton-scheduler",
        "hekaton wake-ups: the Cloud Scheduler tick and Cloud Tasks due steps",
        publishes_to=(TICK_TOPIC, *_STEP_TOPICS),
    ),
    ServiceAccountDef(
        BUILD,
        "hekaton-build",
        "hekaton function builds (Cloud Build)",
        # What Cloud Build needs to build a function: write its logs, push the image to
        # Artifact Registry, read the uploaded source (Google's list for a build account).
        project_roles=(
            "roles/logging.logWriter",
            "roles/artifactregistry.writer",
            "roles/storage.objectAdmin",
        ),
    ),
)

# Cloud Build builds each function as this account: since 2024 a new project's default build
# account may hold no rights at all, and then every function's build fails.
BUILD_ACCOUNT = BUILD

# Cloud Scheduler's finest schedule: once a minute; the tick is the safety net for lost events.
TICK_JOB = "hekaton-tick"
TICK_SCHEDULE = "* * * * *"
TICK_BODY = '{"source":"cloud-scheduler"}'
# The identity whose OAuth token Cloud Tasks and Cloud Scheduler publish with.
TIMER_ACCOUNT = SCHEDULER

# Old ignored-message records expire (Firestore TTL policy on this field of this collection group).
IGNORED_COLLECTION = "ignored"
IGNORED_EXPIRY_FIELD = "expires_at"

# What `gcloud services enable` turns on.
APIS: tuple[str, ...] = (
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "firestore.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "container.googleapis.com",
    "secretmanager.googleapis.com",
    "iam.googleapis.com",
)


@dataclass(frozen=True)
class RbacRule:
    """One Kubernetes RBAC rule of the model-namespace Role."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


# Exactly the calls hekaton makes: shared/knative.py (get/create/patch/delete services, get
# revisions) and shared/istio.py plus KnativeServing.delete_service (get/list/create/update/delete
# the two Istio security kinds). tests/local/test_rbac.py runs those clients under this Role.
RBAC_ROLE = "hekaton"
RBAC_RULES: tuple[RbacRule, ...] = (
    RbacRule("serving.knative.dev", ("services",), ("get", "create", "patch", "delete")),
    RbacRule("serving.knative.dev", ("revisions",), ("get",)),
    RbacRule(
        "security.istio.io",
        ("requestauthentications", "authorizationpolicies"),
        ("get", "list", "create", "update", "delete"),
    ),
)


def account(key: str) -> ServiceAccountDef:
    """The identity with this key (KeyError if none)."""
    for candidate in SERVICE_ACCOUNTS:
        if candidate.key == key:
            return candidate
    raise KeyError(key)


def topic_for_subscription(subscription: str | None) -> str | None:
    """The trigger topic of the function a subscription feeds, or None when it feeds none of ours.

    Local push subscriptions are `hekaton-<function>-push`; Eventarc's in GCP are
    `eventarc-<region>-hekaton-<function>-<n>-sub-<n>`: both hold `hekaton-<function>-`.
    """
    if not subscription:
        return None
    name = subscription.rsplit("/", 1)[-1]
    matches = [
        f
        for f in FUNCTIONS
        if f.dead_letters
        and (name.startswith(f"hekaton-{f.name}-") or f"-hekaton-{f.name}-" in name)
    ]
    # The longest function name wins, should one name ever be a prefix of another.
    best = max(matches, key=lambda f: len(f.name), default=None)
    return best.trigger_topic if best else None


def topics() -> list[str]:
    """Every topic hekaton uses (trigger topics plus the extras)."""
    names = [f.trigger_topic for f in FUNCTIONS if f.trigger_topic]
    return sorted(set(names) | set(EXTRA_TOPICS))
