"""The CLI against a deployment with Google ID tokens, on the local stack.

The CLI is pointed at the stack's functions as at a GCP project (`--project`, explicit URLs) and
gets its token the way it would in GCP with a service-account key: the real google-auth
`fetch_id_token`, whose key file's `token_uri` is a local stand-in for Google's token endpoint
signing with the stack's issuer. The APIs accept a token for their own URL, as deploy.sh sets up.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.google_token_endpoint import GoogleTokenEndpoint, write_service_account_key
from tests.e2e.specs import e2e_repository, e2e_spec
from tests.e2e.stack_client import HEKATON, E2EStack, traffic_pairs

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

SERVICE = "iris-gcpcli"
REPOSITORY = e2e_repository("gcpcli")
NAMESPACE = "e2e"
OPERATOR = "ci-deployer@hekaton.local"  # matches the stack's allowed principals (*@hekaton.local)
OUTSIDER = "intruder@example.com"
PRINTED: list[str] = []  # everything the CLI printed in this module


@pytest.fixture()
def token_endpoint(e2e_stack: E2EStack) -> Iterator[GoogleTokenEndpoint]:
    """Google's token endpoint, played locally with the stack's signing key."""
    endpoint = GoogleTokenEndpoint(e2e_stack.state.state_dir).start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def _key(endpoint: GoogleTokenEndpoint, folder: Path, email: str) -> Path:
    path = folder / f"{email.split('@')[0]}.json"
    endpoint.register(email, write_service_account_key(path, email, endpoint.token_uri, "p"))
    return path


def _gcp_cli(stack: E2EStack, key: Path | None, *args: str, bin_dir: Path) -> tuple[int, str, str]:
    """`hekaton --project … --status-url … --control-url … ARGS`, with only `key` as credentials."""
    env = {k: v for k, v in stack.cli_env().items() if k not in ("HEKATON_TOKEN",)}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    if key is not None:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(key)
    env["PATH"] = str(bin_dir)  # no gcloud: the key (or nothing) is the only source
    env["HEKATON_STATE_DIR"] = str(bin_dir / "no-stack")  # no local signing key to fall back on
    urls = stack.state.exports
    done = subprocess.run(
        [str(HEKATON), "--project", stack.state.project, "--status-url", urls["status_url"],
         "--control-url", urls["control_url"], *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    PRINTED.append(done.stdout + done.stderr)
    return done.returncode, done.stdout, done.stderr


def test_status_and_rollback_with_a_google_id_token_and_clear_refusals_without(
    e2e_stack: E2EStack, token_endpoint: GoogleTokenEndpoint, tmp_path: Path
) -> None:
    stack = e2e_stack
    spec = e2e_spec(SERVICE, REPOSITORY, steps=[100])  # the CLI is under test, not the rollout
    spec["validation"].pop("golden", None)
    stack.register(spec)
    v1 = stack.push(f"{REPOSITORY}:v1")
    assert stack.follow(SERVICE, v1.rollout_id(SERVICE))["phase"] == "PROMOTED"
    v2 = stack.push(f"{REPOSITORY}:v2")
    assert stack.follow(SERVICE, v2.rollout_id(SERVICE))["phase"] == "PROMOTED"
    v1_revision, v2_revision = v1.revision(SERVICE), v2.revision(SERVICE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    key = _key(token_endpoint, tmp_path, OPERATOR)

    rc, out, err = _gcp_cli(stack, key, "status", SERVICE, bin_dir=bin_dir)
    assert rc == 0, err
    assert f"service {SERVICE}" in out and v2_revision in out
    # google-auth asked for a token whose audience is the read API's own URL.
    assert token_endpoint.grants == [
        {"email": OPERATOR, "audience": stack.state.exports["status_url"]}
    ]

    rc, out, err = _gcp_cli(stack, key, "rollback", SERVICE, "--to", v1_revision, bin_dir=bin_dir)
    assert rc == 0, err
    assert f"all traffic on {v1_revision}" in out
    assert traffic_pairs(stack.cluster_traffic(SERVICE, NAMESPACE)) == [(v1_revision, 100)]
    assert token_endpoint.grants[-1] == {
        "email": OPERATOR,
        "audience": stack.state.exports["control_url"],
    }
    assert OPERATOR in json.dumps(stack.history(SERVICE))  # on the record, under the caller's name

    # No credentials at all: says what to run, exits non-zero, changes nothing.
    rc, out, err = _gcp_cli(stack, None, "rollback", SERVICE, "--to", v2_revision, bin_dir=bin_dir)
    assert rc == 2 and out == ""
    assert "gcloud auth login" in err and "GOOGLE_APPLICATION_CREDENTIALS" in err
    assert traffic_pairs(stack.cluster_traffic(SERVICE, NAMESPACE)) == [(v1_revision, 100)]

    # A verified Google identity outside the allowed principals: hekaton's 403, and what to grant.
    outsider = _key(token_endpoint, tmp_path, OUTSIDER)
    rc, out, err = _gcp_cli(stack, outsider, "status", SERVICE, bin_dir=bin_dir)
    assert rc == 1
    assert f"{OUTSIDER} is not allowed" in err and "--allowed-principals" in err

    # No token the endpoint issued ever reaches the output.
    assert len(token_endpoint.issued) == 3
    assert not any(token in text for token in token_endpoint.issued for text in PRINTED)
