"""deploy.sh against recording fakes of gcloud and kubectl: what it runs is what the manifest says."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml

from functions import manifest
from functions.rbac import kubernetes_members, rbac_objects
from shared.settings import Settings
from tests.deploy.cli_runs import NAMESPACES, PROJECT, REGION, REPO, Run, run_deploy

# Verbs of the calls that only look (a dry run makes none of them).
_READ_ONLY = {"describe", "list", "get", "get-value", "get-credentials"}


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _deploys(run: Run) -> dict[str, list[str]]:
    return {a[2]: a for a in run.argvs() if a[:2] == ["functions", "deploy"]}


def _bindings(run: Run) -> set[tuple[str, str, str, str]]:
    """(resource kind, resource, member, role) of every add-iam-policy-binding."""
    found = set()
    for argv in run.argvs():
        if "add-iam-policy-binding" in argv:
            at = argv.index("add-iam-policy-binding")
            role = _flag(argv, "--role") or ""
        elif "add-invoker-policy-binding" in argv:
            at = argv.index("add-invoker-policy-binding")
            role = "roles/run.invoker"
        else:
            continue
        found.add((argv[at - 1], argv[at + 1], _flag(argv, "--member") or "", role))
    return found


def test_every_topic_queue_account_and_the_tick_are_created(fresh: Run) -> None:
    created = {tuple(a[: a.index("create") + 2]) for a in fresh.argvs() if "create" in a}
    for topic in manifest.topics():
        assert ("pubsub", "topics", "create", topic) in created
    assert ("pubsub", "subscriptions", "create", manifest.DEAD_LETTER_INBOX) in created
    assert ("tasks", "queues", "create", manifest.QUEUE.name) in created
    for sa in manifest.SERVICE_ACCOUNTS:
        assert ("iam", "service-accounts", "create", sa.account_id) in created
    assert ("scheduler", "jobs", "create", "http") in created
    assert ("firestore", "databases", "create") in {c[:3] for c in created}
    ttl = [a for a in fresh.argvs() if a[:4] == ["firestore", "fields", "ttls", "update"]]
    assert ttl and manifest.IGNORED_EXPIRY_FIELD in ttl[0]
    assert _flag(ttl[0], "--collection-group") == manifest.IGNORED_COLLECTION


def test_every_function_is_deployed_as_the_manifest_says(fresh: Run) -> None:
    deploys = _deploys(fresh)
    assert set(deploys) == {f.deployed_name for f in manifest.FUNCTIONS}
    for f in manifest.FUNCTIONS:
        argv = deploys[f.deployed_name]
        assert "--gen2" in argv and "--no-allow-unauthenticated" in argv
        assert "--allow-unauthenticated" not in argv
        assert _flag(argv, "--entry-point") == f.entry_point
        assert _flag(argv, "--memory") == f.memory
        assert _flag(argv, "--timeout") == f"{f.timeout_seconds}s"
        assert _flag(argv, "--concurrency") == str(f.concurrency)
        assert _flag(argv, "--ingress-settings") == f.ingress
        assert _flag(argv, "--service-account") == manifest.account(f.account).email(PROJECT)
        builder = manifest.account(manifest.BUILD_ACCOUNT).email(PROJECT)
        assert _flag(argv, "--build-service-account") == (
            f"projects/{PROJECT}/serviceAccounts/{builder}"
        )
        assert _flag(argv, "--trigger-topic") == f.trigger_topic
        assert ("--retry" in argv) == f.retry
        assert ("--trigger-http" in argv) == f.http
        env = _flag(argv, "--set-env-vars") or ""
        queue = f"projects/{PROJECT}/locations/{REGION}/queues/{manifest.QUEUE.name}"
        assert f"HEKATON_TASKS_QUEUE={queue}" in env
        assert "HEKATON_TIMERS=cloudtasks" in env
        timer_account = manifest.account(manifest.TIMER_ACCOUNT).email(PROJECT)
        assert f"HEKATON_TASKS_SERVICE_ACCOUNT={timer_account}" in env
        # What each function reads from that environment, as it will in GCP.
        assert env.startswith("^|^")
        settings = Settings.from_env(dict(v.split("=", 1) for v in env[3:].split("|")))
        assert (settings.project, settings.log_format, settings.model_token) == (
            PROJECT,
            "json",
            "google",  # so a model's `auth:` section can admit hekaton's own requests
        )


def test_the_webhook_url_comes_from_secret_manager_never_an_env_value(fresh: Run) -> None:
    notify = _deploys(fresh)["hekaton-notify"]
    assert _flag(notify, "--set-secrets") == (
        f"{manifest.WEBHOOK_URL_ENV}={manifest.WEBHOOK_SECRET}:latest"
    )
    assert manifest.WEBHOOK_URL_ENV not in (_flag(notify, "--set-env-vars") or "")
    steps = manifest.account(manifest.STEPS).email(PROJECT)
    assert (
        "secrets",
        manifest.WEBHOOK_SECRET,
        f"serviceAccount:{steps}",
        "roles/secretmanager.secretAccessor",
    ) in _bindings(fresh)


def test_iam_is_least_privilege_and_complete(fresh: Run) -> None:
    bindings = _bindings(fresh)
    roles = {b[3] for b in bindings}
    assert "roles/container.developer" not in roles
    assert "roles/editor" not in roles and "roles/owner" not in roles
    project_wide = {(b[2], b[3]) for b in bindings if b[0] == "projects"}
    expected_project = {
        (f"serviceAccount:{sa.email(PROJECT)}", role)
        for sa in manifest.SERVICE_ACCOUNTS
        for role in sa.project_roles
    }
    assert project_wide == expected_project
    for sa in manifest.SERVICE_ACCOUNTS:
        member = f"serviceAccount:{sa.email(PROJECT)}"
        for topic in sa.publishes_to:
            assert ("topics", topic, member, "roles/pubsub.publisher") in bindings
        timers = ("queues", manifest.QUEUE.name, member, "roles/cloudtasks.enqueuer")
        assert (timers in bindings) == sa.schedules_timers
    publishers = {(b[1], b[2]) for b in bindings if b[3] == "roles/pubsub.publisher"}
    assert publishers == {
        (topic, f"serviceAccount:{sa.email(PROJECT)}")
        for sa in manifest.SERVICE_ACCOUNTS
        for topic in sa.publishes_to
    } | {
        (
            manifest.DEAD_LETTER_TOPIC,
            "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com",
        )
    }


def test_every_trigger_subscription_dead_letters_with_the_agent_allowed(fresh: Run) -> None:
    updates = {a[3]: a for a in fresh.argvs() if a[:3] == ["pubsub", "subscriptions", "update"]}
    agent = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    bindings = _bindings(fresh)
    # The dead-letter recorder's own subscription only retries: it must not dead-letter into itself.
    event_functions = [f for f in manifest.FUNCTIONS if f.dead_letters]
    assert len(updates) == len(event_functions)
    assert any(f.trigger_topic == manifest.DEAD_LETTER_TOPIC for f in manifest.FUNCTIONS)
    for f in event_functions:
        name = f"projects/{PROJECT}/subscriptions/eventarc-{REGION}-{f.deployed_name}-sub"
        argv = updates[name]
        assert _flag(argv, "--dead-letter-topic") == (
            f"projects/{PROJECT}/topics/{manifest.DEAD_LETTER_TOPIC}"
        )
        assert _flag(argv, "--max-delivery-attempts") == str(
            manifest.DELIVERY.max_delivery_attempts
        )
        assert ("subscriptions", name, agent, "roles/pubsub.subscriber") in bindings
        invoker = f"serviceAccount:{manifest.account(f.account).email(PROJECT)}"
        assert ("functions", f.deployed_name, invoker, "roles/run.invoker") in bindings
        # Push tokens are signed as the trigger account, by the Pub/Sub service agent.
        token_creator = "roles/iam.serviceAccountTokenCreator"
        assert ("service-accounts", invoker.split(":")[1], agent, token_creator) in bindings


def test_each_namespace_gets_exactly_the_manifest_rbac(fresh: Run) -> None:
    applied = [c for c in fresh.calls if c["tool"] == "kubectl" and "apply" in c["argv"]]
    assert len(applied) == len(NAMESPACES)
    for namespace, call in zip(NAMESPACES, applied, strict=True):
        (content,) = call["files"].values()
        documents = list(yaml.safe_load_all(content))
        assert documents == rbac_objects(namespace, kubernetes_members(PROJECT))


def test_dry_run_prints_the_same_commands_and_calls_nothing(fresh: Run, dry: Run) -> None:
    assert dry.calls == []

    def key(argv: list[str]) -> tuple[str, ...]:
        # What a command does and to what: its words before the first flag, plus member and role.
        words = []
        for token in argv:
            if token.startswith("--"):
                break
            words.append(Path(token).name if token.startswith("/") else token)  # temp paths
        member = re.sub(r"service-[^@]+@", "service-N@", _flag(argv, "--member") or "")
        return (*words, member, _flag(argv, "--role") or "")

    printed = [shlex.split(line) for line in dry.stdout.splitlines() if line.strip()]
    calls = [[c["tool"], *c["argv"]] for c in fresh.calls]
    changing = [argv for argv in calls if not _READ_ONLY & set(argv)]
    assert sorted(map(key, printed)) == sorted(map(key, changing))


def test_a_second_run_creates_nothing(again: Run) -> None:
    creating = [a for a in again.argvs() if "create" in a]
    assert creating == []
    assert not any("create" in a for a in again.argvs("kubectl"))
    summary = again.stderr
    assert " created" not in summary
    assert "already existed" in summary
    # Functions are redeployed (new code), which is safe to repeat.
    assert set(_deploys(again)) == {f.deployed_name for f in manifest.FUNCTIONS}


def test_a_failure_stops_with_the_failing_command_and_a_hint(tmp_path: Path) -> None:
    run = run_deploy(tmp_path, fail=f"queues create {manifest.QUEUE.name}")
    assert run.returncode == 1
    assert f"FAILED: gcloud tasks queues create {manifest.QUEUE.name}" in run.stderr
    assert "hint: your account lacks a role" in run.stderr
    assert not _deploys(run), "nothing after the failing command runs"


def test_a_failed_function_deployment_names_its_command_and_keeps_its_log(tmp_path: Path) -> None:
    run = run_deploy(tmp_path, fail="deploy hekaton-validate")
    assert run.returncode == 1
    assert "FAILED: gcloud functions deploy hekaton-validate" in run.stderr
    assert (tmp_path / "logs" / "validate.log").read_text().count("PERMISSION_DENIED") == 1
    # The others were deployed meanwhile (in parallel), and no trigger was touched afterwards.
    assert len(_deploys(run)) == len(manifest.FUNCTIONS)
    assert not [a for a in run.argvs() if a[:3] == ["pubsub", "subscriptions", "update"]]


def test_help_names_every_prerequisite_and_bad_usage_says_why() -> None:
    def deploy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO / "deploy.sh"), *args], capture_output=True, text=True, check=False
        )

    shown = deploy("--help")
    assert shown.returncode == 0
    for prerequisite in ("billing", "Knative Serving", "Istio", "topic `gcr`", "roles/owner"):
        assert prerequisite in shown.stdout
    unknown = deploy("gcp", "--project", "p", "--colour", "blue")
    assert unknown.returncode == 2 and "unknown option --colour" in unknown.stderr
    partial = deploy("gcp", "--project", "p", "--region", "r", "--cluster", "c")
    assert partial.returncode == 2 and "--cluster-location" in partial.stderr


def test_nothing_is_granted_on_or_to_what_does_not_exist_yet(fresh: Run) -> None:
    calls = fresh.argvs()

    def first(prefix: list[str], name: str) -> int:
        return next(
            i for i, a in enumerate(calls) if a[: len(prefix)] == prefix and name in a[len(prefix)]
        )

    for index, argv in enumerate(calls):
        if "add-iam-policy-binding" not in argv:
            continue
        at = argv.index("add-iam-policy-binding")
        kind, target = argv[at - 1], argv[at + 1]
        if kind == "topics":
            assert first(["pubsub", "topics", "create"], target) < index, argv
        if kind == "queues":
            assert first(["tasks", "queues", "create"], target) < index, argv
        if kind == "service-accounts":
            account_id = target.split("@")[0]
            assert first(["iam", "service-accounts", "create"], account_id) < index, argv
        member = _flag(argv, "--member") or ""
        if member.endswith(f"@{PROJECT}.iam.gserviceaccount.com"):
            account_id = member.split(":")[1].split("@")[0]
            assert first(["iam", "service-accounts", "create"], account_id) < index, argv
