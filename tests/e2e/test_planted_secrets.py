"""Planted secrets never leak: distinct random values put wherever a user or the stack holds a
credential, a rollout run to the end and an operator rollback, then every log file, every Firestore
document, every message on hekaton's topics and every API answer is scanned for each value."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from functions.manifest import topics
from local.auth_keys import PRIVATE_KEY, auth_dir
from tests.e2e.specs import E2E_NAMESPACE, e2e_repository, e2e_spec
from tests.e2e.stack_client import HEKATON, E2EStack, wait_until
from tests.e2e.taps import TopicTap
from tests.e2e.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-secrets"
REPOSITORY = e2e_repository("secrets")
# Characters shown either side of a hit: enough to locate it, never the whole document.
EXCERPT = 40


@dataclass
class Scan:
    """Planted values by label, and every place one of them was found."""

    planted: dict[str, str]
    hits: list[str] = field(default_factory=list)
    places: int = 0

    def look(self, where: str, text: str) -> None:
        """Record each planted value `text` holds, with a short excerpt around it."""
        self.places += 1
        for label, value in self.planted.items():
            at = text.find(value)
            if at >= 0:
                excerpt = text[max(0, at - EXCERPT) : at + len(value) + EXCERPT]
                self.hits.append(f"{label} in {where}: …{excerpt!r}…")


def private_key_material(state_dir: Path) -> dict[str, str]:
    """The stack's signing key as it could leak: each PEM body line and the JWK private parts."""
    pem = (auth_dir(state_dir) / PRIVATE_KEY).read_bytes()
    lines = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
    found = {f"private key PEM line {i}": line for i, line in enumerate(lines) if len(line) >= 32}
    key = serialization.load_pem_private_key(pem, password=None)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    found.update({f"private key JWK {part}": jwk[part] for part in ("d", "p", "q")})
    return found


def firestore_documents(project: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every document of the emulator's database, subcollections included, as (path, fields)."""
    from google.cloud import firestore  # type: ignore[attr-defined,unused-ignore]

    client = firestore.Client(project=project)

    def walk(collections: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        for collection in collections:
            for ref in collection.list_documents():
                snapshot = ref.get()
                if snapshot.exists:
                    yield ref.path, snapshot.to_dict() or {}
                yield from walk(ref.collections())

    try:
        yield from walk(client.collections())
    finally:
        client.close()


def write_spec(folder: Path, spec: dict[str, Any]) -> Path:
    """The spec as a YAML file a user would register."""
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_planted_secret_never_appears_in_logs_events_firestore_or_api_answers(
    e2e_stack: E2EStack, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    stack = e2e_stack
    state_dir = stack.state.state_dir
    plain_env = secrets.token_urlsafe(24)
    smoke_header = secrets.token_urlsafe(24)
    bad_bearer = secrets.token_urlsafe(24)
    api_token = stack.token()
    printed = stack.cli("token", "--principal", "secrets-scan@hekaton.local")
    assert printed.returncode == 0, printed.stderr
    cli_token = printed.stdout.strip()
    planted = {
        "plain-text env value": plain_env,
        "smoke request Authorization value": smoke_header,
        "refused bearer token": bad_bearer,
        "API token": api_token,
        "`hekaton token` output": cli_token,
        "webhook URL secret": webhook.secret,
        **private_key_material(state_dir),
    }
    labels = {value: label for label, value in planted.items()}
    assert len(labels) == len(planted), (
        f"two planted values are the same: {set(planted) - set(labels.values())}"
    )
    scan = Scan(planted)
    answers: list[tuple[str, str]] = []

    # A secret-looking env value in plain text, and a credential in a smoke request: refused at
    # register by the CLI and by the control API alike, naming the field, echoing nothing.
    secret_ref = {"secret": "iris-secrets-model", "key": "api-token"}
    spec = e2e_spec(SERVICE, REPOSITORY, env={"MODEL_API_TOKEN": secret_ref, "FLAVOR": "plain"})
    spec["validation"].pop("golden", None)
    # What a rollout carries matters here, not how much: the 1.4 MB smoke request is left out.
    requests = spec["validation"]["requests"]
    spec["validation"]["requests"] = [r for r in requests if r["name"] != "large-batch"]
    # Values that must be found: proof that each scan reads what it claims to.
    control = Scan({"service name": SERVICE, "secret reference name": secret_ref["secret"]})
    leaky_env = {**spec, "env": {**spec["env"], "UPSTREAM_PASSWORD": plain_env}}
    leaky_header = json.loads(json.dumps(spec))
    leaky_header["validation"]["requests"][0]["headers"] = {
        "Authorization": f"Bearer {smoke_header}"
    }
    refusals = {
        ("env", "UPSTREAM_PASSWORD looks like a secret given in plain text"): leaky_env,
        (
            "validation.requests.0.headers",
            "Authorization: a header carrying a credential cannot be written into a spec",
        ): leaky_header,
    }
    for (field_path, problem), document in refusals.items():
        done = stack.cli("register", str(write_spec(tmp_path, document)))
        assert done.returncode != 0, done.stdout
        assert f"{field_path}: Value error, {problem}" in done.stderr, done.stderr
        answers.append((f"`hekaton register` refusal of {field_path}", done.stdout + done.stderr))
        direct = stack.api("POST", "/services", token=api_token, body={"spec": document})
        assert direct.status_code == 422, (direct.status_code, direct.text[:300])
        assert field_path in direct.text and problem in direct.text, direct.text[:300]
        answers.append((f"control API refusal of {field_path}", direct.text))
    missing = stack.api("GET", f"/services/{SERVICE}", api="status", token=api_token)
    assert missing.status_code == 404, "a refused spec was registered"

    # A caller with a made-up token: 401 from both APIs, the token neither echoed nor logged.
    for api in ("status", "control"):
        refused = stack.api("GET", "/services", api=api, token=bad_bearer)
        assert refused.status_code == 401, (api, refused.status_code)
        answers.append((f"{api} API 401", refused.text))

    # The real thing: a rollout to the end, then an operator rollback, with every topic tapped.
    with TopicTap(stack, topics()) as tap:
        stack.register(spec)
        v1 = stack.push(f"{REPOSITORY}:v1")
        first = stack.follow(SERVICE, v1.rollout_id(SERVICE))
        assert first["phase"] == "PROMOTED", first["reason"]
        v2 = stack.push(f"{REPOSITORY}:v2")
        rollout = stack.follow(SERVICE, v2.rollout_id(SERVICE))
        assert rollout["phase"] == "PROMOTED", rollout["reason"]
        # The operator's command, sending the token `hekaton token` printed.
        rolled = subprocess.run(
            [str(HEKATON), "rollback", SERVICE, "--to", v1.revision(SERVICE), "--json"],
            env={**stack.cli_env(), "HEKATON_TOKEN": cli_token},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert rolled.returncode == 0, rolled.stderr
        answers.append(("`hekaton rollback` output", rolled.stdout + rolled.stderr))
        wait_until(
            lambda: stack.status(SERVICE)["stable_revision"] == v1.revision(SERVICE) or None,
            timeout=20,
            what=f"{v1.revision(SERVICE)} to be stable again after the rollback",
        )
        wait_until(
            lambda: webhook.posts(f"rollout {v2.rollout_id(SERVICE)} #") or None,
            timeout=30,
            what="the webhook posts of the rollout",
        )

    # The secret reaches the model only as a reference the cluster resolves at run time.
    revision = stack.get_revision(v2.revision(SERVICE), E2E_NAMESPACE)
    container_env = revision["spec"]["containers"][0]["env"]
    reference = {"secretKeyRef": {"name": secret_ref["secret"], "key": secret_ref["key"]}}
    assert {"name": "MODEL_API_TOKEN", "valueFrom": reference} in container_env, container_env

    # Every read and control answer a user or the dashboard gets.
    for path in (
        "/services",
        f"/services/{SERVICE}",
        f"/services/{SERVICE}/rollouts",
        f"/rollouts/{v2.rollout_id(SERVICE)}",
        f"/rollouts/{v2.rollout_id(SERVICE)}/decisions",
        "/ignored?limit=100",
        "/dead-letters",
        "/dashboard",
    ):
        response = stack.api("GET", path, api="status", token=api_token)
        assert response.status_code == 200, (path, response.status_code)
        answers.append((f"GET {path}", response.text))

    def look(where: str, text: str) -> None:
        scan.look(where, text)
        control.look(where, text)

    for where, text in answers:
        look(where, text)

    assert tap.errors == []
    for message in tap.messages:
        text = message.data.decode(errors="replace") + json.dumps(message.attributes)
        look(f"message {message.message_id} on {message.topic}", text)
    assert any(m.topic == "hekaton-events" for m in tap.messages), "the tap saw no events"

    for path, fields in firestore_documents(stack.project):
        look(f"Firestore {path}", json.dumps(fields, default=str))

    # Every file the stack wrote (logs of every component, stack.json, emulator data) except the
    # signing key's own folder.
    keys = auth_dir(state_dir)
    for file in sorted(p for p in state_dir.rglob("*") if p.is_file() and keys not in p.parents):
        look(f"file {file.relative_to(state_dir)}", file.read_bytes().decode(errors="replace"))

    assert scan.hits == [], "\n".join(scan.hits)
    for kind in ("GET /services/", "message ", "Firestore services/", "file "):
        assert any(f" in {kind}" in hit for hit in control.hits), (
            f"the scan of {kind!r} saw nothing"
        )
    assert any("secret reference name in Firestore" in hit for hit in control.hits), control.hits
    print(f"\nplanted {len(planted)} values; scanned {scan.places} places, no hit")
