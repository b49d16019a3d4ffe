"""The functions part of the local stack: each function under functions-framework, fed by push subscriptions.

This is how Eventarc runs hekaton in GCP — one service per function, a Pub/Sub push subscription per
trigger topic — rebuilt from real parts: functions-framework processes, the Pub/Sub emulator pushing to
them, and a ticker standing in for Cloud Scheduler.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from functions.manifest import FUNCTIONS, FunctionDef
from local.auth_keys import ALLOWED, AUDIENCE, ISSUER, PRIVATE_KEY, create_keys
from local.components import Component, Launch, Ready, StackContext, http_server_component
from local.faults.components import DELIVERY_EXPORT, FIRESTORE_EXPORT, crash_env, supervised
from local.procs import ManagedProcess
from local.pubsub_wiring import wire
from local.tasks_component import SERVICE_ACCOUNT
from shared.api.dashboard import PATH as DASHBOARD_PATH

REPO_ROOT = Path(__file__).resolve().parents[1]

# Local pace: tests and demos should not wait a minute for a scheduler tick. With the Cloud Tasks
# emulator in the stack, timers wake each wait on time and the tick is only the safety net
# (`hekaton up --tick-seconds 60` paces it as Cloud Scheduler does in GCP).
TICK_SECONDS = 0.5
READY_POLL_SECONDS = 0.25
# Longer than the slowest step (an evaluation whose metrics query runs into its 5 s timeout): a
# step event re-emitted while a worker still handles it only makes two workers race for one write.
LOST_EVENT_GRACE_SECONDS = 30.0
# HTTP functions whose URL stack.json publishes, under these keys.
URL_EXPORTS = {"status": "status_url", "control": "control_url"}


def url_exports(function: str, url: str) -> dict[str, str]:
    """What stack.json publishes for an HTTP function at `url` (the read API also serves the dashboard)."""
    exports = {URL_EXPORTS[function]: url}
    if function == "status":
        exports["dashboard_url"] = url.rstrip("/") + DASHBOARD_PATH
    return exports


def auth_keys(ctx: StackContext) -> Mapping[str, str]:
    """Setup step: a fresh signing key for the stack's tokens; publishes where the JWKS is."""
    jwks = create_keys(ctx.state_dir)
    return {
        "auth_issuer": ISSUER,
        "auth_jwks": str(jwks),
        "auth_audience": AUDIENCE,
        "allowed_principals": ALLOWED,
    }


def function_env(ctx: StackContext) -> dict[str, str]:
    """The settings every local function gets (what deploy.sh sets in GCP, pointed at the stack).

    ``ctx.client_env()`` carries the emulator hosts, the project, ``HEKATON_KUBE_SERVER``,
    ``HEKATON_GATEWAY_URL`` and ``HEKATON_PROMETHEUS_URL`` (metric analysis queries it).
    """
    env = {**ctx.client_env(), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ctx.repo_root)}
    env["HEKATON_PROJECT"] = ctx.project
    env["HEKATON_LOG_FORMAT"] = "json"
    env["HEKATON_READY_POLL_SECONDS"] = str(READY_POLL_SECONDS)
    env["HEKATON_LOST_EVENT_GRACE_SECONDS"] = str(LOST_EVENT_GRACE_SECONDS)
    if "kube_server" in ctx.exports:
        env["HEKATON_KUBE_SERVER"] = ctx.exports["kube_server"]
    if "auth_jwks" in ctx.exports:
        # The APIs verify tokens as in GCP, against the stack's own issuer (local/auth_keys.py).
        env["HEKATON_AUTH_ISSUER"] = ctx.exports["auth_issuer"]
        env["HEKATON_AUTH_JWKS"] = ctx.exports["auth_jwks"]
        env["HEKATON_AUTH_AUDIENCES"] = ctx.exports["auth_audience"]
        env["HEKATON_ALLOWED_PRINCIPALS"] = ctx.exports["allowed_principals"]
        # hekaton's own requests to model APIs with an `auth:` section carry a token of this key
        # (issuer hekaton-local, subject hekaton@hekaton.local).
        env["HEKATON_MODEL_TOKEN"] = "key"
        env["HEKATON_MODEL_TOKEN_KEY"] = str(Path(ctx.exports["auth_jwks"]).parent / PRIVATE_KEY)
    # The webhook sink posts nowhere unless the developer's environment names a webhook (a secret:
    # passed through, never written to stack.json or a log).
    webhook = os.environ.get("HEKATON_NOTIFY_WEBHOOK_URL", "").strip()
    if webhook:
        env["HEKATON_NOTIFY_WEBHOOK_URL"] = webhook
    if "tasks_emulator_host" in ctx.exports:
        # Waits are woken by named tasks in the stack's Cloud Tasks emulator, exactly as in GCP; a
        # task publishes through the Pub/Sub emulator's REST API (the same publish call as GCP's).
        env["HEKATON_TIMERS"] = "cloudtasks"
        env["HEKATON_TASKS_SERVICE_ACCOUNT"] = SERVICE_ACCOUNT.format(project=ctx.project)
        if "pubsub_emulator_host" in ctx.exports:
            env["HEKATON_PUBSUB_PUBLISH_URL"] = f"http://{ctx.exports['pubsub_emulator_host']}"
    if "gateway_url" in ctx.exports:
        # Tag URLs like http://candidate-iris.models.example.com are reached through the gateway.
        env["HEKATON_INGRESS_URL"] = ctx.exports["gateway_url"]
    if FIRESTORE_EXPORT in ctx.exports:  # fault injection: Firestore through its outage proxy
        env["FIRESTORE_EMULATOR_HOST"] = ctx.exports[FIRESTORE_EXPORT]
    return env


def function_component(
    function: FunctionDef, *, timeout: float = 60.0, extra_env: Mapping[str, str] | None = None
) -> Component:
    """One function served by functions-framework on a free loopback port (`extra_env` on top of
    the stack's settings: a test pointing one function somewhere else)."""

    def command(port: int, ctx: StackContext) -> list[str]:
        argv = [
            sys.executable, "-m", "functions_framework",
            f"--source={ctx.repo_root / function.source}",
            f"--target={function.entry_point}",
            f"--signature-type={'http' if function.http else 'cloudevent'}",
            "--host=127.0.0.1",
            f"--port={port}",
        ]  # fmt: skip
        return supervised(argv, ctx, function.name)

    def env(ctx: StackContext) -> dict[str, str]:
        crash = crash_env(ctx, event_function=not function.http)
        return {**function_env(ctx), **crash, **(extra_env or {})}

    return http_server_component(
        f"fn-{function.name}",
        command,
        env=env,
        cwd=REPO_ROOT,
        # Proof that it is serving, whatever its dependencies say (an event function answers a GET
        # with an error; /healthz would wait on Firestore and Kubernetes, absent from `up --only`).
        health_path="/openapi.json" if function.http else "/",
        accept=(lambda status, _body: status == 200) if function.http else None,
        exports=(lambda url: url_exports(function.name, url))
        if function.name in URL_EXPORTS
        else None,
        timeout=timeout,
        url_env=own_url_audience if function.http else None,
    )


def own_url_audience(ctx: StackContext, url: str) -> dict[str, str]:
    """An HTTP function also accepts tokens whose audience is its own URL, as deploy.sh sets in GCP
    (so the CLI's Google ID token path, which asks for the URL as audience, works locally too)."""
    if "auth_audience" not in ctx.exports:
        return {}
    return {"HEKATON_AUTH_AUDIENCES": f"{ctx.exports['auth_audience']},{url}"}


def wire_subscriptions(ctx: StackContext) -> Mapping[str, str]:
    """Create the topics and one push subscription per event function (after they are listening)."""
    # With `up --only ...` some functions (or Pub/Sub itself) are not part of this stack.
    endpoints = {
        f.name: ctx.urls[f"fn-{f.name}"]
        for f in FUNCTIONS
        if f.trigger_topic and f"fn-{f.name}" in ctx.urls
    }
    if DELIVERY_EXPORT in ctx.exports:  # fault injection: pushes go through the delivery proxy
        proxy = ctx.exports[DELIVERY_EXPORT].rstrip("/")
        endpoints = {name: f"{proxy}/{name}" for name in endpoints}
    if endpoints and "pubsub_emulator_host" in ctx.exports:
        wire(ctx.exports["pubsub_emulator_host"], ctx.project, endpoints)
    return {}


def ticker_component(interval: float = TICK_SECONDS) -> Component:
    """Cloud Scheduler's stand-in: a tick on `hekaton-tick` every `interval` seconds."""

    def launch(ctx: StackContext) -> Launch:
        argv = (
            sys.executable,
            "-m",
            "local.ticker",
            f"--project={ctx.project}",
            f"--interval={interval}",
        )
        env = {**os.environ, **ctx.client_env(), "PYTHONPATH": str(ctx.repo_root)}
        return Launch(argv=argv, env=env, cwd=ctx.repo_root)

    def probe(launch: Launch, process: ManagedProcess) -> Ready | None:
        return Ready(url=f"pubsub://{interval:g}s")

    return Component(name="ticker", launch=launch, probe=probe, timeout=10.0)


def function_components() -> tuple[Component, ...]:
    """Every function in the manifest, as stack components."""
    return tuple(function_component(f) for f in FUNCTIONS)
