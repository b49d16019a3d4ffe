"""The manifest as tab-separated records for deploy.sh (bash reads lines, not Python objects).

python -m functions.manifest_shell plan PROJECT       every record deploy.sh acts on
python -m functions.manifest_shell rbac PROJECT NS    the namespace's Role and RoleBinding (YAML)
python -m functions.manifest_shell indexes < JSON     `gcloud firestore indexes composite list
                                                      --format json` as `index` record tails
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from functions import manifest
from functions.rbac import kubernetes_members, rbac_objects

REPO_ROOT = Path(__file__).resolve().parents[1]
INDEXES_FILE = REPO_ROOT / "firestore.indexes.json"


def _row(*fields: object) -> str:
    for field in fields:
        if "\t" in str(field) or "\n" in str(field):
            raise ValueError(f"manifest value {field!r} holds a tab or newline")
    return "\t".join(str(field) for field in fields)


def _csv(values: tuple[str, ...] | list[str]) -> str:
    return ",".join(values) or "-"


def index_field_configs(index: dict[str, Any]) -> str:
    """One composite index as `gcloud firestore indexes composite create --field-config` values."""
    configs = []
    for field in index["fields"]:
        if field["fieldPath"] == "__name__":
            continue  # Firestore appends it to every index it lists
        order = field.get("order")
        mode = f"order={order.lower()}" if order else f"array-config={field['arrayConfig'].lower()}"
        configs.append(f"field-path={field['fieldPath']},{mode}")
    return " ".join(configs)


def plan(project: str) -> Iterator[str]:
    """Every record: api, topic, inbox, account, function, delivery, queue, tick, build, ttl, index."""
    for api in manifest.APIS:
        yield _row("api", api)
    for topic in manifest.topics():
        yield _row("topic", topic)
    yield _row("inbox", manifest.DEAD_LETTER_INBOX, manifest.DEAD_LETTER_TOPIC)
    for sa in manifest.SERVICE_ACCOUNTS:
        yield _row(
            "account",
            sa.key,
            sa.account_id,
            sa.email(project),
            sa.description,
            _csv(sa.project_roles),
            _csv(sa.publishes_to),
            int(sa.kubernetes),
            int(sa.schedules_timers),
        )
    for f in manifest.FUNCTIONS:
        secrets = [f"{env}={secret}:latest" for env, secret in f.secrets]
        yield _row(
            "function",
            f.name,
            f.deployed_name,
            f.source,
            f.entry_point,
            f.trigger_topic or "-",
            f.memory,
            f.cpu,
            f"{f.timeout_seconds}s",
            f.concurrency,
            f.ingress,
            manifest.account(f.account).email(project),
            int(f.retry),
            _csv(secrets),
        )
    d = manifest.DELIVERY
    yield _row(
        "delivery",
        d.max_delivery_attempts,
        f"{d.min_backoff_seconds}s",
        f"{d.max_backoff_seconds}s",
    )
    q = manifest.QUEUE
    yield _row(
        "queue", q.name, q.max_attempts, f"{q.min_backoff_seconds}s", f"{q.max_backoff_seconds}s"
    )
    yield _row(
        "tick",
        manifest.TICK_JOB,
        manifest.TICK_SCHEDULE,
        manifest.TICK_TOPIC,
        manifest.TICK_BODY,
        manifest.account(manifest.TIMER_ACCOUNT).email(project),
    )
    yield _row("build", manifest.account(manifest.BUILD_ACCOUNT).email(project))
    yield _row("ttl", manifest.IGNORED_COLLECTION, manifest.IGNORED_EXPIRY_FIELD)
    for index in json.loads(INDEXES_FILE.read_text())["indexes"]:
        yield _row("index", index["collectionGroup"], index_field_configs(index))


def existing_indexes(listed: list[dict[str, Any]]) -> Iterator[str]:
    """The listed indexes (`gcloud ... composite list --format json`) as `group<TAB>fields` lines."""
    for index in listed:
        # Listed indexes are named projects/P/databases/D/collectionGroups/G/indexes/ID.
        group = index.get("collectionGroup") or index["name"].split("/")[5]
        yield _row(group, index_field_configs(index))


def rbac_yaml(project: str, namespace: str) -> str:
    """The namespace's Role and RoleBinding as a multi-document YAML for `kubectl apply -f -`."""
    return yaml.safe_dump_all(rbac_objects(namespace, kubernetes_members(project)), sort_keys=False)


def main(argv: list[str]) -> int:
    """Print the plan or the RBAC YAML; usage errors exit 2."""
    if len(argv) == 2 and argv[0] == "plan":
        print("\n".join(plan(argv[1])))
        return 0
    if argv == ["indexes"]:
        lines = list(existing_indexes(json.load(sys.stdin)))
        print("\n".join(lines))
        return 0
    if len(argv) == 3 and argv[0] == "rbac":
        print(rbac_yaml(argv[1], argv[2]), end="")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
