"""`hekaton register | push | status | history | watch`: the rollout commands a user types."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from cli.target import Target, TargetError, resolve
from events.artifact_registry import split_image
from events.errors import MalformedEvent
from events.steps import REGISTRY_TOPIC, ROLLBACK_TOPIC

TERMINAL = {"PROMOTED", "FAILED", "ROLLED_BACK", "SUPERSEDED"}


class CommandError(RuntimeError):
    """A command failed in a way the user can fix; the message says how."""


# --- library functions (used by the commands, the demo, the benchmark and the e2e tests) -----------


def register_file(target: Target, path: Path) -> tuple[str, bool]:
    """Validate and register a service spec file; returns (service name, created)."""
    from shared.firestore_store import FirestoreStore
    from shared.registry import register
    from shared.spec import SpecError, load_spec

    try:
        spec = load_spec(path)
    except SpecError as exc:
        raise CommandError(str(exc)) from exc
    target.apply_env()
    record, created = register(FirestoreStore.for_project(target.project), spec, datetime.now(UTC))
    return record.name, created


def registry_message(image: str, *, delete: bool = False) -> dict[str, str]:
    """The Artifact Registry notification for a push (or tag deletion) of `image`."""
    try:
        ref = split_image(image)
    except MalformedEvent as exc:
        raise CommandError(f"cannot push {image!r}: {exc.reason}") from exc
    if delete:
        if not ref.tag:
            raise CommandError("--delete needs a tag (IMAGE:TAG)")
        return {"action": "DELETE", "tag": f"{ref.repository}:{ref.tag}"}
    digest = ref.digest
    if digest is None:
        if not ref.tag:
            raise CommandError(f"cannot push {image!r}: give a tag or a digest")
        from local.registry import derive_digest  # the local registry's deterministic digests

        digest = derive_digest(ref.repository, ref.tag)
    body = {"action": "INSERT", "digest": f"{ref.repository}@{digest}"}
    if ref.tag:
        body["tag"] = f"{ref.repository}:{ref.tag}"
    return body


def publish_push(target: Target, body: dict[str, str] | bytes) -> str:
    """Publish an Artifact Registry-shaped message to the `gcr` topic; returns the message id."""
    return publish(target, REGISTRY_TOPIC, body)


def publish(
    target: Target, topic: str, body: dict[str, str | None] | dict[str, str] | bytes
) -> str:
    """Publish a JSON body (or raw bytes) to one of hekaton's topics; returns the message id."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

    target.apply_env()
    publisher = pubsub_v1.PublisherClient()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    future = publisher.publish(publisher.topic_path(target.project, topic), data)
    return str(future.result(timeout=30))


def fetch(target: Target, path: str) -> Any:
    """GET a JSON document from the status API; CommandError with its message on 4xx."""
    if not target.status_url:
        raise CommandError("no status URL: set HEKATON_STATUS_URL or start the local stack")
    try:
        response = httpx.get(target.status_url.rstrip("/") + path, timeout=10)
    except httpx.HTTPError as exc:
        raise CommandError(f"status API at {target.status_url} unreachable: {exc}") from exc
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise CommandError(str(message))
    return response.json()


def wait_for_rollout(
    target: Target,
    service: str,
    *,
    since: datetime | None = None,
    rollout_id: str | None = None,
    timeout: float = 300.0,
    on_decision: Any = None,
    on_progress: Any = None,
    poll_seconds: float = 0.2,
) -> dict[str, Any]:
    """Follow the rollout (by id, or the first one started after `since`) until it ends; return it.

    `on_decision(rollout, decision)` sees each new decision once; `on_progress(rollout, figures)` sees
    each new analysis evaluation of the running step (the live figures).
    """
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    last_figures_at = None
    while time.monotonic() < deadline:
        rollouts = fetch(target, f"/services/{service}/rollouts")["rollouts"]
        current = _pick(rollouts, since, rollout_id)
        if current is not None:
            rollout_id = current["id"]
            for decision in current.get("decisions", []):
                if decision["id"] not in seen:
                    seen.add(decision["id"])
                    if on_decision:
                        on_decision(current, decision)
            figures = current.get("analysis")
            if (
                figures
                and figures.get("at") != last_figures_at
                and current["phase"] not in TERMINAL
            ):
                last_figures_at = figures.get("at")
                if on_progress:
                    on_progress(current, figures)
            if current["phase"] in TERMINAL:
                return dict(current)
        time.sleep(poll_seconds)
    raise CommandError(
        f"no rollout of {service} ended within {timeout:.0f}s (see `hekaton status {service}`)"
    )


def _pick(
    rollouts: list[dict[str, Any]], since: datetime | None, rollout_id: str | None
) -> dict[str, Any] | None:
    if rollout_id:
        return next((r for r in rollouts if r["id"] == rollout_id), None)
    fresh = [
        r for r in rollouts if since is None or datetime.fromisoformat(r["started_at"]) >= since
    ]
    if since is None:
        fresh = [r for r in fresh if r["phase"] not in TERMINAL] or fresh[:1]
    return fresh[-1] if fresh else None  # oldest of the fresh ones: the first push after `since`


# --- rendering ------------------------------------------------------------------------------------

_LONG_DIGEST = re.compile(r"(sha256:[0-9a-f]{12})[0-9a-f]{52}")


def short_image(reference: str | None) -> str:
    """`repo:tag@sha256:<12 hex>`: a full digest is noise in a table."""
    return _LONG_DIGEST.sub(r"\1", reference or "")


def one_line(text: str | None) -> str:
    """Join a multi-line reason into one line."""
    return " | ".join(line.strip() for line in str(text or "").splitlines() if line.strip())


def render_status(status: dict[str, Any]) -> str:
    """The human status table."""
    lines = [
        f"service {status['service']} (namespace {status['namespace']})",
        f"  stable:  {status['stable_revision'] or '-'}  {short_image(status.get('stable_image'))}".rstrip(),
        "  traffic:",
    ]
    if status["traffic"]:
        for entry in status["traffic"]:
            lines.append(
                f"    {entry['revision']:<32} {entry['percent']:>3}%  {entry.get('tag') or ''}".rstrip()
            )
    else:
        lines.append("    (no traffic reported by the cluster)")
    if status.get("cluster_error"):
        lines.append(f"  cluster: {status['cluster_error']}")
    active, last = status.get("active_rollout"), status.get("last_rollout")
    if active:
        lines.append(
            f"  active:  {active['id']}  {active['phase']}  step {active['step']} of {active['steps']}  "
            f"{short_image(active['image'])}"
        )
        if active.get("analysis"):
            lines.append(f"  live:    {render_figures(active['analysis'])}")
    else:
        lines.append("  active:  none")
    if last:
        lines.append(f"  last:    {last['id']}  {last['phase']}  {short_image(last['image'])}")
        lines.append(f"           {one_line(last.get('reason'))}")
    return "\n".join(lines)


def render_figures(figures: dict[str, Any]) -> str:
    """The running step's live figures in one line: verdict, measured rates, what is still needed."""
    verdict = str(figures.get("verdict") or "").upper()
    parts = [f"step {figures.get('percent', '?')}%", verdict, one_line(figures.get("reason"))]
    if figures.get("needed_requests"):
        parts.append(f"needs ~{figures['needed_requests']:,} more candidate requests")
    if figures.get("problem"):
        parts.append(one_line(figures["problem"]))
    return " · ".join(p for p in parts if p)


def render_progress(figures: dict[str, Any]) -> str:
    """A live-figures line in the same layout as a decision line."""
    at = (figures.get("at") or "")[11:23]
    return f"  {at}  {'  analysing':<28} {render_figures(figures)}"


def render_decision(decision: dict[str, Any]) -> str:
    """One line per decision: time, phase change, reason."""
    at = (decision.get("at") or "")[11:23]
    arrow = f"{decision['phase_from'] or 'NEW'} -> {decision['phase_to']}"
    reason = " | ".join(
        line.strip() for line in str(decision["reason"]).splitlines() if line.strip()
    )
    return f"  {at}  {arrow:<28} {reason}"


def render_history(history: list[dict[str, Any]]) -> str:
    """Rollouts newest first, with their decisions."""
    lines = []
    for rollout in history:
        lines.append(f"{rollout['id']}  {rollout['phase']}  {short_image(rollout['image'])}")
        lines.extend(render_decision(d) for d in rollout.get("decisions", []))
    return "\n".join(lines) or "no rollouts yet"


# --- commands -------------------------------------------------------------------------------------


def _cmd_register(args: argparse.Namespace) -> int:
    name, created = register_file(resolve(), Path(args.file))
    print(f"{'registered' if created else 'updated'} service {name}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    body = registry_message(args.image, delete=args.delete)
    message_id = publish_push(resolve(), body)
    print(f"published to topic {REGISTRY_TOPIC}: {json.dumps(body)} (message {message_id})")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    status = fetch(resolve(), f"/services/{args.service}")
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    history = fetch(resolve(), f"/services/{args.service}/rollouts")["rollouts"]
    print(json.dumps(history, indent=2) if args.json else render_history(history))
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    def show(rollout: dict[str, Any], decision: dict[str, Any]) -> None:
        print(render_decision(decision), flush=True)

    def progress(rollout: dict[str, Any], figures: dict[str, Any]) -> None:
        print(render_progress(figures), flush=True)

    target = resolve()
    status = fetch(target, f"/services/{args.service}")  # unknown service: the error, nothing else
    if args.rollout is not None:
        # An unknown id is said at once (it used to be waited for until the timeout).
        named = fetch(target, f"/rollouts/{quote(args.rollout, safe='')}")
        if named.get("service") != args.service:
            raise CommandError(
                f"rollout {args.rollout} is a rollout of {named.get('service')}, not {args.service}"
            )
    if args.rollout is None and status["active_rollout"] is None and status["last_rollout"]:
        last = status["last_rollout"]
        print(
            f"no rollout of {args.service} in flight; the last one, {last['id']}, ended {last['phase']}:"
        )
    else:
        print(f"watching {args.service} (Ctrl-C to stop)", flush=True)
    ended = wait_for_rollout(
        target,
        args.service,
        rollout_id=args.rollout,
        timeout=args.timeout,
        on_decision=show,
        on_progress=progress,
    )
    print(f"{ended['id']} ended {ended['phase']}: {ended.get('reason') or ''}")
    return 0 if ended["phase"] == "PROMOTED" else 1


def _cmd_rollback(args: argparse.Namespace) -> int:
    body = {"service": args.service, "reason": args.reason, "requested_by": args.requested_by}
    if args.to:
        body["revision"] = args.to
    message_id = publish(resolve(), ROLLBACK_TOPIC, body)
    print(
        f"rollback of {args.service} requested (message {message_id}); see `hekaton status {args.service}`"
    )
    return 0


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except (CommandError, TargetError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def register(subparsers: Any) -> None:
    """Add the rollout commands to the `hekaton` parser."""
    p = subparsers.add_parser("register", help="register (or update) a service from a YAML spec")
    p.add_argument("file")
    p.set_defaults(func=_guard(_cmd_register))
    p = subparsers.add_parser(
        "push", help="publish an Artifact Registry push of IMAGE[:TAG][@DIGEST] to `gcr`"
    )
    p.add_argument("image")
    p.add_argument("--delete", action="store_true", help="send a DELETE of the tag instead")
    p.set_defaults(func=_guard(_cmd_push))
    p = subparsers.add_parser(
        "status", help="stable revision, live traffic, active and last rollout"
    )
    p.add_argument("service")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_status))
    p = subparsers.add_parser("history", help="a service's rollouts, newest first, with decisions")
    p.add_argument("service")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_history))
    p = subparsers.add_parser(
        "watch", help="follow the active rollout; exit 0 on PROMOTED, 1 otherwise"
    )
    p.add_argument("service")
    p.add_argument("--rollout", help="follow this rollout id instead of the active one")
    p.add_argument("--timeout", type=float, default=600.0)
    p.set_defaults(func=_guard(_cmd_watch))
    p = subparsers.add_parser(
        "rollback", help="force traffic back to the stable (or a named) revision"
    )
    p.add_argument("service")
    p.add_argument("--to", help="revision name or image digest (sha256:...) to return to")
    p.add_argument("--reason", default="operator rollback")
    p.add_argument("--requested-by", default=os.environ.get("USER") or "operator")
    p.set_defaults(func=_guard(_cmd_rollback))
