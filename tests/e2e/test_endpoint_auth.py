"""Endpoint auth on the real stack: the gateway enforces the service's Istio policies, and
hekaton's own validation requests carry a token, so the rollout still validates and promotes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.specs import E2E_NAMESPACE, e2e_repository, e2e_spec
from tests.e2e.stack_client import E2EStack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-auth"
REPOSITORY = e2e_repository("auth")
HOST = f"{SERVICE}.{E2E_NAMESPACE}.example.com"


def _predict(stack: E2EStack, token: str | None) -> httpx.Response:
    headers = {"Host": HOST}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(
        f"{stack.gateway_url}/predict",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        headers=headers,
        timeout=10,
    )


def test_a_service_with_auth_refuses_bad_callers_and_still_promotes(e2e_stack: E2EStack) -> None:
    jwks = e2e_stack.state.state_dir / "auth" / "jwks.json"
    auth = {
        "issuers": [
            {"issuer": "hekaton-local", "jwks_uri": str(jwks), "audiences": ["hekaton-local"]}
        ],
        "principals": ["hekaton-local/alice@hekaton.local", "hekaton-local/hekaton@hekaton.local"],
    }
    spec = e2e_spec(SERVICE, REPOSITORY, auth=auth)
    spec["validation"].pop("golden", None)
    e2e_stack.register(spec)
    v1 = e2e_stack.push(f"{REPOSITORY}:v1")
    assert e2e_stack.follow(SERVICE, v1.rollout_id(SERVICE))["phase"] == "PROMOTED"
    v2 = e2e_stack.push(f"{REPOSITORY}:v2")  # validated through the policies, with hekaton's token
    assert e2e_stack.follow(SERVICE, v2.rollout_id(SERVICE))["phase"] == "PROMOTED"

    allowed = e2e_stack.token("alice@hekaton.local")
    wait_until(
        lambda: _predict(e2e_stack, None).status_code == 403 or None, timeout=10, what="policy"
    )
    assert _predict(e2e_stack, None).text == "RBAC: access denied\n"
    bad = allowed[:-4] + ("AAAA" if not allowed.endswith("AAAA") else "BBBB")
    assert _predict(e2e_stack, bad).status_code == 401
    assert _predict(e2e_stack, e2e_stack.token("mallory@hekaton.local")).status_code == 403
    answered = _predict(e2e_stack, allowed)
    assert answered.status_code == 200, answered.text
    assert answered.json()["predictions"] == ["setosa"]


def test_register_refuses_an_auth_section_that_would_lock_hekaton_out(
    e2e_stack: E2EStack, tmp_path: Path
) -> None:
    """`hekaton register` of a section admitting only alice: exit non-zero, the field and what to
    add in the message, nothing registered."""
    jwks = e2e_stack.state.state_dir / "auth" / "jwks.json"
    auth = {
        "issuers": [
            {"issuer": "hekaton-local", "jwks_uri": str(jwks), "audiences": ["hekaton-local"]}
        ],
        "principals": ["hekaton-local/alice@hekaton.local"],
    }
    name = f"{SERVICE}-locked"
    spec = e2e_spec(name, REPOSITORY, auth=auth)
    spec["validation"].pop("golden", None)
    path = tmp_path / "locked.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = e2e_stack.cli("register", str(path))
    assert done.returncode != 0, done.stdout
    assert (
        "auth.principals: none admits 'hekaton-local/hekaton@hekaton.local', hekaton's own "
        "principal" in done.stderr
    ), done.stderr
    assert "add `hekaton-local/hekaton@hekaton.local`" in done.stderr
    assert (
        e2e_stack.api("GET", f"/services/{name}", api="status", token=e2e_stack.token()).status_code
        == 404
    )
