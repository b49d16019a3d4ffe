"""Fixtures shared by every test tier: the real emulators, and a guard against leftover processes.

- ``pubsub_emulator`` / ``firestore_emulator`` (session): ``host:port`` of a real emulator started
  once per session in its own process group, stopped at the end. Skipped, with the Debian package
  to install, where the Cloud CLI emulator packages are missing.
- ``pubsub_env`` / ``firestore_env``: the same, with ``PUBSUB_EMULATOR_HOST`` /
  ``FIRESTORE_EMULATOR_HOST`` set for this test only.
- ``firestore_project``: a fresh project id (empty database) with the Firestore env set; its
  documents are deleted afterwards.
- ``prometheus_server`` (session): a real Prometheus (Debian package ``prometheus``) in its own
  process group with an empty TSDB, scraping every second whatever ``scrape(urls)`` names;
  ``wait_for_scrape(url, after)`` polls until it scraped ``url`` after a moment. Skipped, naming
  the package, where ``prometheus`` is missing.
- Every process started during the session carries ``HEKATON_TEST_SESSION=<token>`` in its
  environment; any still alive when the session ends is killed and reported as an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from local.components import ComponentFailed, MissingComponent, RunningComponent
from local.emulators import FIRESTORE, PUBSUB, EmulatorSpec, reset_firestore, start_emulator
from local.procs import cmdline, processes_with_env
from local.prometheus_component import start_prometheus, write_targets

SESSION_TOKEN_VAR = "HEKATON_TEST_SESSION"
# Per-call deadline for tests that check what a local real server (emulator, Prometheus, cluster)
# answers, not how fast. The production default (5 s) was exceeded once in CI by a cold Firestore
# emulator's first commit while the other two shards started their stacks on the same 2 cores; the
# bounds themselves are tested, with their own short deadlines, in tests/integration/test_fail_fast.py.
LOCAL_CALL_TIMEOUT = 30.0
EMULATOR_FIXTURES = {"pubsub_emulator", "firestore_emulator"}
_MISSING_MARK = "is not available"


def pytest_configure(config: pytest.Config) -> None:
    """Give this session a token that every child process inherits; let its children get Ctrl-C."""
    os.environ[SESSION_TOKEN_VAR] = uuid.uuid4().hex
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    # across exec: the CLI processes the tests interrupt would never see their Ctrl-C. A handler
    # (unlike SIG_IGN) is reset to the default on exec, so children start as from a terminal.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# bin/test runs the suite as three concurrent pytest processes: `stack`, the e2e tests on the shared
# stack (mostly waiting on it); `own`, the e2e tests that start stacks of their own (the soak, the
# fault and dead-letter stacks, the timers' stack; also mostly waiting); and `rest`, everything else
# (unit, local, integration, deploy: the CPU-bound tiers). Unset: one process runs everything.
SHARD_VAR = "HEKATON_TEST_SHARD"
SHARDS = ("stack", "own", "rest")
_E2E_PACKAGES = {"e2e", "e2e_timers"}


def _shard_of(item: pytest.Item) -> str:
    package = item.path.relative_to(Path(__file__).parent).parts[0]
    if package not in _E2E_PACKAGES:
        return "rest"
    return "own" if item.get_closest_marker("own_stack") is not None else "stack"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests that use an emulator with ``emulators`` (so ``-m "not emulators"`` works); keep
    only this shard's tests when HEKATON_TEST_SHARD names one."""
    for item in items:
        if EMULATOR_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.emulators)
    shard = os.environ.get(SHARD_VAR, "")
    if not shard:
        return
    if shard not in SHARDS:
        raise pytest.UsageError(f"{SHARD_VAR}={shard!r}: choose one of {', '.join(SHARDS)}")
    kept = [item for item in items if _shard_of(item) == shard]
    dropped = [item for item in items if _shard_of(item) != shard]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List, once each, the missing components that made tests skip (with how to install them)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and _MISSING_MARK in str(longrepr[2]):
            reason = str(longrepr[2]).removeprefix("Skipped: ")
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped: missing components", sep="-", yellow=True)
        for reason, count in sorted(reasons.items()):
            terminalreporter.write_line(f"{count} test(s): {reason}")


def _under_xdist(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput") or bool(getattr(config.option, "numprocesses", None))


@pytest.fixture(autouse=True)
def _no_saved_cli_contexts(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI reads no context the developer saved (a current one would point tests at GCP)."""
    monkeypatch.setenv("HEKATON_CONFIG_DIR", str(tmp_path_factory.mktemp("cli-config")))


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """At session end (after every other fixture is torn down) no process of ours may be alive."""
    yield
    if _under_xdist(request.config):
        return  # sibling workers carry the token too; the check needs a single process
    token = os.environ[SESSION_TOKEN_VAR]
    leftovers = {
        pid: " ".join(cmdline(pid)) for pid in processes_with_env(SESSION_TOKEN_VAR, token)
    }
    if not leftovers:
        return
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    listing = "\n".join(f"  pid {pid}: {cmd[:200]}" for pid, cmd in sorted(leftovers.items()))
    pytest.fail(
        f"{len(leftovers)} process(es) started by this test session were still running at "
        f"its end (now killed):\n{listing}",
        pytrace=False,
    )


def _started(start: Callable[[Path], RunningComponent], log_path: Path) -> RunningComponent:
    """Start a component for a fixture: skip if it is not installed, fail with its log if it dies."""
    try:
        return start(log_path)
    except MissingComponent as exc:
        pytest.skip(str(exc))
    except ComponentFailed as exc:
        pytest.fail(f"{exc}\n--- {log_path} ---\n{exc.log_tail()}", pytrace=False)


def _run_emulator(spec: EmulatorSpec, factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = factory.mktemp(f"{spec.name}-emulator") / f"{spec.name}.log"
    running = _started(lambda log: start_emulator(spec, log), log_path)
    try:
        yield running.ready.exports[spec.export_key]
    finally:
        running.process.stop()


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of the session's real Pub/Sub emulator."""
    yield from _run_emulator(PUBSUB, tmp_path_factory)


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of the session's real Firestore emulator."""
    yield from _run_emulator(FIRESTORE, tmp_path_factory)


@pytest.fixture
def pubsub_env(pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Pub/Sub emulator host, exported as PUBSUB_EMULATOR_HOST for this test."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    return pubsub_emulator


@pytest.fixture
def firestore_env(firestore_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Firestore emulator host, exported as FIRESTORE_EMULATOR_HOST for this test."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
    return firestore_emulator


def fresh_project_id(prefix: str = "test") -> str:
    """A project id no other test uses (so its emulator data starts empty)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def firestore_project(firestore_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty Firestore project in the emulator (env set); wiped after the test."""
    project = fresh_project_id()
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    yield project
    reset_firestore(firestore_env, project)


@dataclass
class PrometheusServer:
    """A real Prometheus for the session: where it is, and how to point it at something."""

    url: str
    state_dir: Path
    log_path: Path

    def scrape(self, urls: list[str]) -> None:
        """Scrape ``/metrics`` of these ``http://host:port`` URLs every second (replaces the list)."""
        write_targets(self.state_dir, urls)

    def last_scrape(self, url: str) -> datetime | None:
        """When Prometheus last began a successful scrape of ``url``, if it has."""
        with urllib.request.urlopen(
            f"{self.url}/api/v1/targets", timeout=LOCAL_CALL_TIMEOUT
        ) as response:
            targets = json.load(response)["data"]["activeTargets"]
        for target in targets:
            if target["scrapeUrl"] == f"{url}/metrics" and target["health"] == "up":
                # RFC 3339 with nanoseconds; microseconds are plenty.
                stamp = target["lastScrape"].replace("Z", "+00:00")
                head, _, rest = stamp.partition(".")
                fraction, _, zone = rest.partition("+")
                return datetime.fromisoformat(f"{head}.{fraction[:6]:0<6}+{zone}")
        return None

    def wait_for_scrape(self, url: str, after: datetime, timeout: float = 30.0) -> datetime:
        """Poll until a scrape of ``url`` began after ``after``; fail with the log at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.last_scrape(url)
            if seen is not None and seen > after:
                return seen
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"Prometheus did not scrape {url} after {after.isoformat()} within {timeout}s "
                    f"(last scrape {seen}); see {self.log_path}",
                    pytrace=False,
                )
            time.sleep(0.05)


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """The session's real Prometheus (scraping nothing until told to)."""
    state_dir = tmp_path_factory.mktemp("prometheus")
    log_path = state_dir / "prometheus.log"
    running = _started(lambda log: start_prometheus(state_dir, log), log_path)
    try:
        yield PrometheusServer(running.ready.url, state_dir, log_path)
    finally:
        running.process.stop()
