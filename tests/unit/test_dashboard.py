"""The dashboard's page (public shell, no data, strict CSP) and `hekaton dashboard` (a signed-in URL)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from cli import dashboard_commands
from cli.main import main
from cli.target import Target
from functions.status import answer
from local.functions_stack import url_exports
from shared.api import control
from shared.api.http import ApiRequest
from shared.api.serve import public_paths, serve
from shared.auth.tokens import TokenVerifier
from tests.fakes import World
from tests.tokens import Issuer


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    return Issuer.create(tmp_path)


@pytest.fixture
def world(issuer: Issuer) -> World:
    created = World.create(**issuer.settings())
    created.register()
    return created


def _inline(html: str, tag: str) -> str:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S)
    assert match, tag
    return match.group(1)


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_is_served_without_a_token_and_holds_no_data(world: World) -> None:
    response = answer(world.deps, ApiRequest("GET", "/dashboard"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    html = response.encoded().decode()
    assert html.startswith("<!doctype html>") and "iris" not in html
    # Data still needs a token: the page's own requests without one get 401.
    assert answer(world.deps, ApiRequest("GET", "/services")).status == 401


def test_the_page_allows_only_its_own_script_and_style_and_same_origin_requests(
    world: World,
) -> None:
    response = answer(world.deps, ApiRequest("GET", "/dashboard"))
    html = response.encoded().decode()
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["script-src"] == _sha(_inline(html, "script"))
    assert policy["style-src"] == _sha(_inline(html, "style"))
    assert response.headers["Referrer-Policy"] == "no-referrer"
    # Rendered text goes through textContent only: nothing the API returns is parsed as HTML.
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html


def test_only_the_read_api_serves_the_page(world: World) -> None:
    on_control = serve(
        world.deps, ApiRequest("GET", "/dashboard"), control.routes, public_paths("control")
    )
    assert on_control.status == 401
    assert answer(world.deps, ApiRequest("POST", "/dashboard")).status == 401


def test_stack_json_publishes_the_dashboard_url() -> None:
    assert url_exports("status", "http://127.0.0.1:8080") == {
        "status_url": "http://127.0.0.1:8080",
        "dashboard_url": "http://127.0.0.1:8080/dashboard",
    }
    assert url_exports("control", "http://127.0.0.1:8081") == {
        "control_url": "http://127.0.0.1:8081"
    }


def _local_target(monkeypatch: pytest.MonkeyPatch, issuer: Issuer) -> None:
    target = Target("hekaton-local", "http://127.0.0.1:9/", stack_dir=issuer.folder)
    monkeypatch.setattr(dashboard_commands, "resolve", lambda: target)
    monkeypatch.delenv("HEKATON_TOKEN", raising=False)


def test_dashboard_prints_a_signed_in_url_with_the_token_in_the_fragment(
    monkeypatch: pytest.MonkeyPatch, issuer: Issuer, capsys: pytest.CaptureFixture[str]
) -> None:
    _local_target(monkeypatch, issuer)
    opened: list[Any] = []
    monkeypatch.setattr(dashboard_commands.webbrowser, "open", lambda *a, **k: opened.append(a))
    assert main(["dashboard", "--no-open", "--ttl", "120", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["url"] == "http://127.0.0.1:9/dashboard" and not out["opened"] and not opened
    base, _, fragment = out["signed_in_url"].partition("#token=")
    assert base == out["url"]
    settings = issuer.settings()
    claims = TokenVerifier(
        settings["auth_issuer"], settings["auth_audiences"], settings["auth_jwks"]
    ).verify(fragment)
    assert claims.name.endswith("@hekaton.local")


def test_dashboard_opens_a_browser_only_where_there_is_a_display(
    monkeypatch: pytest.MonkeyPatch, issuer: Issuer, capsys: pytest.CaptureFixture[str]
) -> None:
    _local_target(monkeypatch, issuer)
    opened: list[str] = []
    monkeypatch.setattr(
        dashboard_commands.webbrowser, "open", lambda url, new=0: opened.append(url) or True
    )
    monkeypatch.setattr(dashboard_commands.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["dashboard"]) == 0
    assert not opened and "open it in a browser" in capsys.readouterr().out
    monkeypatch.setenv("DISPLAY", ":0")
    assert main(["dashboard"]) == 0
    assert len(opened) == 1 and "#token=" in opened[0]
    assert "opened in your browser" in capsys.readouterr().out


def test_dashboard_against_gcp_without_a_token_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = Target("proj", "https://status.example/")
    monkeypatch.setattr(dashboard_commands, "resolve", lambda: target)
    monkeypatch.delenv("HEKATON_TOKEN", raising=False)
    assert main(["dashboard", "--no-open"]) == 2
    assert "set HEKATON_TOKEN" in capsys.readouterr().err
