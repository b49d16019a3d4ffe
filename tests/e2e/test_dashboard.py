"""The dashboard in headless Chromium (Playwright) on the real stack: what a person sees.

v1 is pushed, then a v2 rollout with a few seconds of bake per step runs while the page is open
with the token `hekaton dashboard` printed: the service is listed, its traffic split drawn as bars
with the cluster's percentages, the running rollout's step changes without a reload, and v2 ends
PROMOTED in the history with its reason. Without a token the page shows the API's 401 and no data.
An operator's reason full of HTML is shown as text. Screenshots: `.hekaton/dashboard-rollout.png`
(mid-rollout) and `.hekaton/dashboard.png` (the end), or under $HEKATON_SCREENSHOT_DIR.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.specs import E2E_NAMESPACE, e2e_repository, e2e_spec
from tests.e2e.stack_client import REPO_ROOT, E2EStack, Pushed, traffic_pairs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.emulators]

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the Python package playwright is not installed (it is in the dev extras: "
    "pip install -e '.[dev]')",
)

SERVICE = "iris-dash"
REPOSITORY = e2e_repository("dashboard")
BAKE_SECONDS = 8  # per step: the page (polling every 1.5 s) and the cluster are both read within it
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = '<img src=x onerror="window.pwned=1">'


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("HEKATON_SCREENSHOT_DIR") or REPO_ROOT / ".hekaton")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, driven by Playwright (never a downloaded browser)."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium is not installed: install the Debian package chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _bars(page: Any) -> list[tuple[str, int]]:
    rows = page.locator(f'[data-service="{SERVICE}"] .bar-row')
    return [
        (
            str(rows.nth(i).get_attribute("data-revision")),
            int(rows.nth(i).get_attribute("data-percent")),
        )
        for i in range(rows.count())
    ]


def _bar_widths(page: Any) -> list[str]:
    """The drawn widths, as the browser computed them relative to their track."""
    return list(
        page.eval_on_selector_all(
            f'[data-service="{SERVICE}"] .bar',
            "bars => bars.map(b => Math.round(100 * b.getBoundingClientRect().width / "
            "b.parentElement.getBoundingClientRect().width) + '%')",
        )
    )


def _step_shown(page: Any) -> str | None:
    step = page.locator(f'[data-service="{SERVICE}"] .active-rollout .step')
    return step.inner_text() if step.count() else None


def test_the_dashboard_shows_services_traffic_and_a_rollout_live(
    browser: Any, e2e_stack: E2EStack
) -> None:
    stack = e2e_stack
    stack.register(e2e_spec(SERVICE, REPOSITORY, bake_seconds=BAKE_SECONDS))
    done = stack.cli("push", f"{REPOSITORY}:v1")
    assert done.returncode == 0, done.stderr
    v1 = Pushed(f"{REPOSITORY}:v1", "", stack_digest(stack, "v1")).revision(SERVICE)
    v2 = Pushed(f"{REPOSITORY}:v2", "", stack_digest(stack, "v2")).revision(SERVICE)

    opened = stack.cli("dashboard", "--no-open", "--json")
    assert opened.returncode == 0, opened.stderr
    answer = json.loads(opened.stdout)
    assert answer["url"] == stack.state.exports["dashboard_url"] and not answer["opened"]
    assert answer["signed_in_url"].startswith(answer["url"] + "#token=")

    # Without a token: the API's refusal, no data.
    anonymous = browser.new_context()
    page = anonymous.new_page()
    page.goto(answer["url"])
    page.wait_for_function("document.getElementById('error').textContent.includes('401')")
    assert "Not signed in" in page.inner_text("#error")
    assert page.locator("[data-service]").count() == 0 and SERVICE not in page.content()
    anonymous.close()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(answer["signed_in_url"])
    page.wait_for_selector(f'[data-service="{SERVICE}"]')
    assert "#token=" not in page.url  # moved to sessionStorage, out of the address bar
    assert page.evaluate("sessionStorage.length") == 1
    wait_until(lambda: _bars(page) == [(v1, 100)], timeout=10, what="v1 at 100% on the page")
    page.evaluate("window.notReloaded = true")

    pushed = stack.cli("push", "--no-wait", f"{REPOSITORY}:v2")
    assert pushed.returncode == 0, pushed.stderr
    # The rollout this push starts (the service's last finished one is still v1's).
    follow_hint = re.search(rf"hekaton watch {SERVICE} --rollout (\S+)", pushed.stdout)
    assert follow_hint, pushed.stdout
    rid = follow_hint.group(1)
    # Each step as the page draws it, checked against what the cluster reports.
    seen: list[str] = []
    for percent, step in ((10, "step 1/3 (10%)"), (50, "step 2/3 (50%)")):
        wait_until(lambda s=step: _step_shown(page) == s, timeout=30, what=f"{step} on the page")
        seen.append(step)
        expected = sorted([(v1, 100 - percent), (v2, percent)])
        wait_until(lambda e=expected: sorted(_bars(page)) == e, timeout=10, what=f"bars {expected}")
        cluster = sorted(traffic_pairs(stack.cluster_traffic(SERVICE, E2E_NAMESPACE)))
        assert cluster == expected, "the page and the cluster disagree"
        assert sorted(_bar_widths(page)) == sorted(f"{p}%" for _, p in expected)
        if percent == 50:
            shot = screenshot_dir() / "dashboard-rollout.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"\ndashboard screenshot (mid-rollout): {shot}")
    live = page.locator(f'[data-service="{SERVICE}"] .active-rollout').inner_text()
    assert "SHIFTING" in live and v2 in live

    # The end: PROMOTED in the history with its reason, all traffic on v2, never reloaded.
    ended = stack.follow(SERVICE, rid, timeout=60)
    assert ended["phase"] == "PROMOTED"
    row = page.locator(f'tr.rollout[data-rollout="{rid}"][data-phase="PROMOTED"]')
    row.wait_for(timeout=10_000)
    assert ended["reason"] and ended["reason"] in row.locator("td.reason").inner_text()
    # v1 stays routed at 0 % (tag previous) during its warm window: drawn as an empty bar.
    wait_until(
        lambda: _bars(page) == [(v2, 100), (v1, 0)],
        timeout=10,
        what="v2 at 100% and the warm v1 at 0% on the page",
    )
    # The bars above can come from a poll between the promote step's traffic write and its
    # commit (the rollout still PROMOTING, v1 still stable): the next poll draws the end.
    card_text = page.locator(f'[data-service="{SERVICE}"]').inner_text
    wait_until(
        lambda: "no rollout in flight" in card_text() and f"stable {v2}" in card_text(),
        timeout=10,
        what="no rollout in flight and v2 stable on the page",
    )
    assert f"{v1} (previous)" in card_text()
    assert page.evaluate("window.notReloaded") is True

    # User-controlled text is shown as text, never run as HTML.
    done = stack.cli("rollback", SERVICE, "--reason", HOSTILE)
    assert done.returncode == 0, done.stderr
    card = page.locator(f'[data-service="{SERVICE}"]')
    wait_until(
        lambda: HOSTILE in (card.text_content() or ""), timeout=15, what="the reason as text"
    )
    wait_until(lambda: _bars(page) == [(v1, 100)], timeout=10, what="v1 back at 100%")
    card.locator("tr.log summary").first.click()  # the newest rollout's decision log, opened
    assert page.evaluate("window.pwned") is None
    assert page.locator("#services img").count() == 0

    shot = screenshot_dir() / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot}")
    context.close()


ROLLOUT = {
    "id": "iris-abc-1",
    "service": "iris",
    "kind": "rollout",
    "phase": "SHIFTING",
    "image": "us-docker.pkg.dev/demo/models/iris:v2@sha256:" + "ab" * 32,
    "digest": "sha256:" + "ab" * 32,
    "revision": "iris-abababababab",
    "stable_revision": "iris-v1",
    "step": 0,
    "steps": [10, 50, 100],
    "traffic_percent": 10,
    "reason": None,
    "started_at": "2026-12-01T20:00:00+00:00",
    "analysis": {
        "verdict": "continue",
        "reason": f"not enough evidence yet {HOSTILE}",
        "candidate": {"requests": 8, "errors": 1, "slow": 2},
        "stable": {"requests": 74, "errors": 0, "slow": 0},
        "needed_requests": 120,
    },
}


def test_the_page_renders_live_figures_and_sends_the_token(browser: Any) -> None:
    """Against canned API answers (no stack): the analysis figures, escaping, the bearer token."""
    from shared.api.dashboard import page as dashboard_page

    shell = dashboard_page()
    seen: list[str | None] = []
    answers: dict[str, Any] = {
        "/services": {"services": [{"service": "iris"}], "next_cursor": None},
        "/services/iris": {
            "service": "iris",
            "namespace": "models",
            "image_repository": "us-docker.pkg.dev/demo/models/iris",
            "stable_revision": "iris-v1",
            "ready": True,
            "traffic": [
                {"revision": "iris-v1", "percent": 90, "tag": "stable"},
                {"revision": "iris-abababababab", "percent": 10, "tag": "candidate"},
            ],
            "active_rollout": ROLLOUT,
        },
        "/services/iris/rollouts": {
            "service": "iris",
            "rollouts": [{**ROLLOUT, "decisions": []}],
            "next_cursor": None,
        },
    }

    def handle(route: Any) -> None:
        path = route.request.url.split("//", 1)[1].split("/", 1)[1].split("?")[0]
        if path == "dashboard":
            route.fulfill(status=200, headers=shell.headers, body=shell.encoded())
            return
        seen.append(route.request.headers.get("authorization"))
        route.fulfill(status=200, json=answers["/" + path])

    context = browser.new_context()
    page = context.new_page()
    page.route("http://dashboard.test/**", handle)
    page.goto("http://dashboard.test/dashboard#token=abc.def")
    page.wait_for_selector('[data-service="iris"] .live')
    live = page.locator('[data-service="iris"] .live').inner_text()
    assert "CONTINUE" in live and f"not enough evidence yet {HOSTILE}" in live
    assert "candidate: requests 8, errors 1, slow 2" in live and "stable: requests 74" in live
    assert "needs ~120 more candidate requests" in live
    assert page.locator("#services img").count() == 0 and page.evaluate("window.pwned") is None
    assert set(seen) == {"Bearer abc.def"}
    assert "step 1/3 (10%)" in page.locator('[data-service="iris"] .step').inner_text()
    context.close()


def stack_digest(stack: E2EStack, tag: str) -> str:
    from cli.rollout_commands import registry_message

    return str(registry_message(f"{REPOSITORY}:{tag}")["digest"].split("@", 1)[1])
