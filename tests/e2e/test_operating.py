"""Operating a rollout on the real stack (issue 7's "done when"), through the CLI and the APIs.

One service walks through it in order: push (waits for the outcome), an ignored push (non-zero),
rollback during a running rollout (who and why in history), a rollback to a revision that never
served (refused, non-zero), pause / resume / promote, unauthenticated calls (401), and DELETE with
a token from `hekaton token` (gone from the cluster, history still readable).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from cli.rollout_commands import START_GRACE
from local.auth_keys import default_principal
from shared.steps.ingest import revision_name
from tests.e2e.specs import E2E_NAMESPACE, e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, traffic_pairs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-ops"
REPOSITORY = e2e_repository("rollback")  # shared with test_operator_rollback: see _only_follower
BAKE_SECONDS = 30  # long enough that only an operator ends a step within the test


def _only_follower(stack: E2EStack) -> None:
    """Delete other live services following this repository (a push would start them too)."""
    for entry in stack.get("/services?limit=100")["services"]:
        if entry["image_repository"] == REPOSITORY and not entry["deleted_at"]:
            response = stack.api("DELETE", f"/services/{entry['service']}", token=stack.token())
            assert response.status_code == 200, response.text


def _at_10_percent(stack: E2EStack, revision: str) -> Any:
    active = stack.status(SERVICE)["active_rollout"]
    if not active or active["phase"] != "SHIFTING" or active["traffic_percent"] != 10:
        return None
    traffic = traffic_pairs(stack.cluster_traffic(SERVICE, E2E_NAMESPACE))
    return active if (revision, 10) in traffic else None


def _revision(stack: E2EStack, tag: str) -> str:
    from cli.rollout_commands import registry_message

    digest = registry_message(f"{REPOSITORY}:{tag}")["digest"].split("@", 1)[1]
    return revision_name(SERVICE, digest)


def test_operating_a_rollout_through_the_cli_and_the_apis(e2e_stack: E2EStack) -> None:
    stack = e2e_stack
    _only_follower(stack)
    stack.register(e2e_spec(SERVICE, REPOSITORY, bake_seconds=BAKE_SECONDS))
    v1, v2, v3 = (_revision(stack, tag) for tag in ("v1", "v2", "v3"))
    me = default_principal()

    # A push waits for its outcome: the first deploy is promoted, exit 0, decisions printed.
    done = stack.cli("push", f"{REPOSITORY}:v1")
    assert done.returncode == 0, done.stderr
    assert "ended PROMOTED" in done.stdout

    # A push hekaton ignores says why and exits non-zero.
    done = stack.cli("push", f"{REPOSITORY}:latest")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "ignored: tag 'latest' does not match" in done.stdout

    # Rollback during a running v2 rollout: all traffic back on v1 within seconds.
    pushed = stack.cli("push", "--no-wait", f"{REPOSITORY}:v2")
    assert pushed.returncode == 0, pushed.stderr
    running = wait_until(lambda: _at_10_percent(stack, v2), timeout=30, what="v2 at 10%")
    # --no-wait named the rollout the push would start: the id ingest gave it.
    assert f"follow it: hekaton watch {SERVICE} --rollout {running['id']}\n" in pushed.stdout
    asked = time.monotonic()
    done = stack.cli("rollback", SERVICE, "--reason", "test")
    assert done.returncode == 0, done.stderr
    assert traffic_pairs(stack.cluster_traffic(SERVICE, E2E_NAMESPACE)) == [(v1, 100)]
    # Ended by the operator, not by the analysis: well before the step's bake could have ended.
    assert time.monotonic() - asked < BAKE_SECONDS
    ended = stack.rollout(running["id"])
    assert ended["phase"] == "ROLLED_BACK"
    history = stack.cli("history", SERVICE)
    assert history.returncode == 0
    assert f"rollback requested by {me}" in history.stdout and ": test" in history.stdout
    last = ended["decisions"][-1]
    assert last["values"]["requested_by"] == me and last["values"]["request_reason"] == "test"

    # A rollback to a revision that never served (v2 only held a canary share) is refused.
    done = stack.cli("rollback", SERVICE, "--to", v2)
    assert done.returncode == 1
    assert f"revision {v2} never served {SERVICE}" in done.stderr
    assert traffic_pairs(stack.cluster_traffic(SERVICE, E2E_NAMESPACE)) == [(v1, 100)]

    # pause / resume / promote on a running rollout.
    assert stack.cli("push", "--no-wait", f"{REPOSITORY}:v3").returncode == 0
    running = wait_until(lambda: _at_10_percent(stack, v3), timeout=30, what="v3 at 10%")
    done = stack.cli("pause", SERVICE, "--reason", "looking", "--for", "600")
    assert done.returncode == 0, done.stderr
    assert stack.status(SERVICE)["active_rollout"]["phase"] == "PAUSED"
    time.sleep(1.5)  # ticks come and go: a paused rollout stays where it is
    assert stack.status(SERVICE)["active_rollout"]["phase"] == "PAUSED"
    assert (v3, 10) in traffic_pairs(stack.cluster_traffic(SERVICE, E2E_NAMESPACE))
    assert stack.cli("resume", SERVICE).returncode == 0
    done = stack.cli("resume", SERVICE)
    assert done.returncode == 1
    assert "resume is not possible while the rollout is SHIFTING; it applies to PAUSED" in (
        done.stderr
    )
    done = stack.cli("promote", SERVICE, "--reason", "ship it", timeout=60)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert stack.rollout(running["id"])["phase"] == "PROMOTED"
    assert traffic_pairs(stack.cluster_traffic(SERVICE, E2E_NAMESPACE)) == [(v3, 100)]

    # watch of an unknown rollout says so at once.
    started = time.monotonic()
    done = stack.cli("watch", SERVICE, "--rollout", "no-such-rollout")
    assert done.returncode != 0 and "does not exist" in done.stderr
    # Not after the grace an id of the service's own would get (cli START_GRACE).
    assert time.monotonic() - started < START_GRACE

    # Unauthenticated calls: 401 and no data, on both APIs.
    for api in ("read", "control"):
        for token in (None, "garbage"):
            response = stack.api("GET", f"/services/{SERVICE}", api=api, token=token)
            assert response.status_code == 401, (api, token, response.text)
            assert set(response.json()) == {"error"}

    # Bad input: refused with a reason, recorded, nothing changed.
    token = stack.token()
    before = stack.status(SERVICE)
    for path, body, status, says in (
        (f"/services/{SERVICE}/rollback", b"\xff\xfe", 422, "not UTF-8"),
        (f"/services/{SERVICE}/rollback", b"[" * 10_000 + b"]" * 10_000, 422, "nested deeper"),
        (f"/services/{SERVICE}/rollback", b'{"reason": "' + b"x" * 100_000 + b'"}', 422, "longer"),
        (f"/services/{SERVICE}/rollback", b'{"revision": "../../x"}', 422, "not a revision"),
        ("/services/..%2F..%2Fetc/abort", b"", 404, ""),
        (f"/services/{SERVICE}/approve", b"", 409, "has no rollout in flight for approve"),
        (
            f"/rollouts/{running['id']}/resume",
            b"",
            409,
            "resume is not possible while the rollout is PROMOTED; it applies to PAUSED",
        ),
        ("/services/no-such-service/abort", b"", 404, "is not registered"),
    ):
        response = stack._http.post(
            stack.state.exports["control_url"] + path,
            content=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == status, (path, response.text)
        assert says in response.json()["error"]
    assert stack.status(SERVICE)["traffic"] == before["traffic"]
    recorded = [e for e in stack.ignored() if e["function"] == "control"]
    assert any("nested deeper" in e["reason"] for e in recorded)
    assert all(len(e["excerpt"]) <= 300 and len(e["reason"]) <= 500 for e in recorded)

    # DELETE with a token from `hekaton token`: gone from the cluster, history still readable.
    token = stack.cli("token").stdout.strip()
    response = stack.api("DELETE", f"/services/{SERVICE}", token=token)
    assert response.status_code == 200, response.text
    assert response.json()["removed_from_cluster"] is True
    gone = stack._http.get(
        f"{stack.state.exports['kube_server']}/apis/serving.knative.dev/v1/namespaces/"
        f"{E2E_NAMESPACE}/services/{SERVICE}"
    )
    assert gone.status_code == 404
    history = stack.history(SERVICE)
    assert len(history) >= 3 and {r["phase"] for r in history} >= {"PROMOTED", "ROLLED_BACK"}
    assert stack.status(SERVICE)["deleted_by"] == me
