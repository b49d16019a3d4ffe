"""Register refuses an `auth:` section that would refuse hekaton's own validation requests."""

from __future__ import annotations

from typing import Any

import pytest

from shared.auth.own_access import istio_match, lockout_problems
from shared.auth_spec import AuthSpec
from shared.commands import Refused
from shared.services_admin import put_service
from shared.settings import Settings
from tests.fakes import World, iris_spec
from tests.unit.test_auth_spec import RSA_JWKS

LOCAL = {"model_token": "key", "model_token_key": "/unused/key.pem"}
HEKATON = "hekaton-local/hekaton@hekaton.local"


def auth(issuer: str = "hekaton-local", **fields: Any) -> dict[str, Any]:
    """An auth section trusting `issuer` (inline keys: no fetch)."""
    return {"issuers": [{"issuer": issuer, "jwks": RSA_JWKS, "audiences": ["iris"]}], **fields}


def problems(section: dict[str, Any], **settings: Any) -> list[str]:
    """What the check says about `section` under `settings`."""
    return lockout_problems(AuthSpec.model_validate(section), Settings(project="p", **settings))


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("*", "a/b", True),
        ("hekaton-local/*", HEKATON, True),
        ("*@hekaton.local", HEKATON, True),
        (HEKATON, HEKATON, True),
        ("hekaton-local/alice@hekaton.local", HEKATON, False),
        ("other/*", HEKATON, False),
        ("*@example.com", HEKATON, False),
    ],
)
def test_istio_match(pattern: str, value: str, matches: bool) -> None:
    assert istio_match(pattern, value) is matches


@pytest.mark.parametrize(
    "principals", [["*"], [HEKATON], ["hekaton-local/*"], ["*@hekaton.local", "x/y"]]
)
def test_a_section_admitting_hekatons_principal_passes(principals: list[str]) -> None:
    assert problems(auth(principals=principals), **LOCAL) == []


def test_a_section_without_hekatons_principal_is_named_with_what_to_add() -> None:
    found = problems(auth(principals=["hekaton-local/alice@hekaton.local"]), **LOCAL)
    assert found == [
        f"auth.principals: none admits {HEKATON!r}, hekaton's own principal, so its validation "
        f"requests would be refused (403); add `{HEKATON}`"
    ]


def test_a_section_not_trusting_hekatons_issuer_is_named() -> None:
    (found,) = problems(auth("https://other.example.com"), **LOCAL)
    assert found.startswith("auth.issuers: none is 'hekaton-local'")
    assert "add `- issuer: hekaton-local`" in found


def test_required_claims_hekatons_token_lacks_are_named() -> None:
    section = auth(claims={"groups": ["ml-team"], "email": ["ops@example.com"], "aud": ["iris"]})
    found = problems(section, **LOCAL)
    assert found == [
        "auth.claims.email: hekaton's own token carries email='hekaton@hekaton.local', so its "
        "validation requests would be refused (403); add 'hekaton@hekaton.local' to the accepted "
        "values",
        "auth.claims.groups: hekaton's own token carries no groups claim, so its validation "
        "requests would be refused (403); drop it",
    ]


def test_without_a_token_of_its_own_any_section_locks_hekaton_out() -> None:
    (found,) = problems(auth(), model_token="none")
    assert found.startswith("auth: hekaton's own requests")
    assert "HEKATON_MODEL_TOKEN=google" in found


def test_google_tokens_are_checked_by_issuer_and_by_what_a_principal_could_be() -> None:
    google = "https://accounts.google.com"
    assert problems(auth(google, principals=[f"{google}/1234567890"]), model_token="google") == []
    assert problems(auth(google, principals=["*"]), model_token="google") == []
    (issuer,) = problems(auth(principals=["*"]), model_token="google")
    assert issuer.startswith(f"auth.issuers: none is {google!r}")
    (principal,) = problems(auth(google, principals=["other/*"]), model_token="google")
    assert principal.startswith("auth.principals: no pattern admits a principal of")


def test_register_refuses_a_lockout_and_stores_nothing() -> None:
    world = World.create(**LOCAL)
    section = auth(principals=["hekaton-local/alice@hekaton.local"])
    with pytest.raises(Refused) as caught:
        put_service(world.deps, iris_spec(auth=section), None, principal="ops", key="k1")
    assert caught.value.status == 422
    assert f"auth.principals: none admits {HEKATON!r}" in str(caught.value)
    assert world.store.get_service("iris") is None

    section["principals"].append(HEKATON)
    answer = put_service(world.deps, iris_spec(auth=section), None, principal="ops", key="k2")
    assert answer["created"] is True
