"""`hekaton register | push | status | history | watch | rollback`: thin clients of the APIs."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cli.api_client import CommandError, Refusal, Unavailable, control, fetch
from cli.target import Target, TargetError, resolve
from events.artifact_registry import split_image
from events.errors import MalformedEvent
from events.steps import REGISTRY_TOPIC

TERMINAL = {"PROMOTED", "FAILED", "ROLLED_BACK", "SUPERSEDED", "DELETED"}
# What happens to a rollout in a phase with a deadline of its own when the deadline passes.
AT_DEADLINE = {
    "PAUSED": "rolled back unless resumed (or promoted) before",
    "AWAITING_APPROVAL": "rolled back unless approved before",
    "VALIDATING": "FAILED without a verdict by then",
}
ACCEPT_TIMEOUT = 30.0  # seconds for hekaton to start (or ignore) a pushed image
MAX_LISTED = 10_000  # items a listing (`services`, `ignored`, `dlq list`) fetches at most
START_GRACE = ACCEPT_TIMEOUT  # seconds `watch --rollout ID` waits for an id not started yet

__all__ = ["CommandError", "Refusal", "fetch"]


# --- library functions (used by the commands, the demo, the benchmark and the e2e tests) -----------


def register_file(target: Target, path: Path) -> tuple[str, bool]:
    """Register a service spec file through the control API; returns (service name, created).

    The file is read here, with what it names beside it (the golden set's JSONL is embedded), and
    checked once locally for a quick answer; the control API validates it again and registers it.
    """
    from shared.spec import SpecError, load_spec

    try:
        spec = load_spec(path)
    except SpecError as exc:
        raise CommandError(str(exc)) from exc
    answer = control(target, "POST", "/services", {"spec": spec.to_document()})
    return str(answer["service"]), bool(answer["created"])


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
    """Publish a JSON body (or raw bytes) to one of hekaton's topics; returns the message id.

    Against GCP this uses the user's application default credentials; a missing login or role
    becomes a CommandError saying what to run or grant.
    """
    from google.api_core import exceptions as api_errors
    from google.auth import exceptions as auth_errors
    from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

    target.apply_env()
    where = f"topic {topic} of project {target.project}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        publisher = pubsub_v1.PublisherClient()
        future = publisher.publish(publisher.topic_path(target.project, topic), data)
        return str(future.result(timeout=30))
    except auth_errors.DefaultCredentialsError:
        raise CommandError(
            f"cannot publish to {where}: no Google credentials; run "
            "`gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS)"
        ) from None
    except api_errors.PermissionDenied as exc:
        raise CommandError(
            f"cannot publish to {where}: permission denied ({exc.message}); your account needs "
            f"roles/pubsub.publisher on it (gcloud pubsub topics add-iam-policy-binding {topic} "
            f"--project {target.project} --member user:YOU --role roles/pubsub.publisher)"
        ) from None
    except api_errors.NotFound:
        raise CommandError(
            f"cannot publish to {where}: no such topic (has `./deploy.sh gcp` run there?)"
        ) from None


def how_many(highest: int) -> Any:
    """An argparse type for `--limit`: a whole number from 1 to `highest` (0 would list nothing
    and call that empty)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not 1 <= value <= highest:
            raise argparse.ArgumentTypeError(f"must be between 1 and {highest}, got {value}")
        return value

    return parse


class Patient:
    """The read API as a following command uses it: an answer saying hekaton cannot answer now
    (503: a dependency down) is waited out until `deadline` (said once on stderr), then it is the
    command's error; every other answer is returned or raised at once."""

    def __init__(self, target: Target, timeout: float, poll_seconds: float = 0.2) -> None:
        self.target = target
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.said = False

    def fetch(self, path: str) -> Any:
        """GET `path`, waiting out an outage until the deadline."""
        while True:
            try:
                return fetch(self.target, path)
            except Unavailable as exc:
                if time.monotonic() >= self.deadline:
                    raise CommandError(
                        f"hekaton could not answer within the {self.timeout:g}s this command "
                        f"waits: {exc}"
                    ) from None
                if not self.said:
                    print(f"  (waiting: {exc})", file=sys.stderr, flush=True)
                    self.said = True
                time.sleep(self.poll_seconds)


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
    if rollout_id is not None:
        return _follow(target, rollout_id, timeout, on_decision, on_progress, poll_seconds)
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    last_figures_at = None
    api = Patient(target, timeout, poll_seconds)
    while time.monotonic() < deadline:
        rollouts = api.fetch(f"/services/{service}/rollouts")["rollouts"]
        current = _pick(rollouts, since, rollout_id)
        if current is not None:
            rollout_id = current["id"]
            for decision in current.get("decisions", []):
                if decision["id"] not in seen:
                    seen.add(decision["id"])
                    last_figures_at = max(last_figures_at or "", decision.get("at") or "")
                    if on_decision:
                        on_decision(current, decision)
            figures = current.get("analysis")
            # An evaluation that ended in a decision was shown as that decision already.
            if (
                figures
                and (figures.get("at") or "") > (last_figures_at or "")
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


def _follow(
    target: Target,
    rollout_id: str,
    timeout: float,
    on_decision: Any,
    on_progress: Any,
    poll_seconds: float,
) -> dict[str, Any]:
    """Follow one rollout by id, reading only the decisions after the last one seen."""
    deadline = time.monotonic() + timeout
    path = f"/rollouts/{quote(rollout_id, safe='')}"
    after, last_shown_at = 0, ""
    api = Patient(target, timeout, poll_seconds)
    while time.monotonic() < deadline:
        try:
            current = api.fetch(f"{path}?after={after}")
        except Refusal as refusal:
            if refusal.status != 404:
                raise
            time.sleep(poll_seconds)  # not created yet (ingest has not run)
            continue
        for decision in current.get("decisions", []):
            after = max(after, int(decision["seq"]))
            last_shown_at = max(last_shown_at, decision.get("at") or "")
            if on_decision:
                on_decision(current, decision)
        figures = current.get("analysis")
        # Only figures newer than what was printed: an evaluation that a decision shown in the
        # same poll already ended would print after it, out of order.
        figures_at = (figures or {}).get("at") or ""
        if figures and figures_at > last_shown_at and current["phase"] not in TERMINAL:
            last_shown_at = figures_at
            if on_progress:
                on_progress(current, figures)
        if current["phase"] in TERMINAL:
            return dict(fetch(target, path))  # with its whole decision log
        time.sleep(poll_seconds)
    raise CommandError(
        f"rollout {rollout_id} did not end within {timeout:.0f}s (see `hekaton watch`)"
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
    if status.get("previous_revision"):
        lines.append(
            f"  warm:    {status['previous_revision']} (previous stable, 0%) until "
            f"{status.get('previous_warm_until') or '?'}: `hekaton rollback "
            f"{status['service']}` returns to it at once"
        )
    if status.get("cluster_error"):
        lines.append(f"  cluster: {status['cluster_error']}")
    if status.get("deleted_at"):
        lines.append(
            f"  deleted: {status['deleted_at']} by {status.get('deleted_by') or '?'} "
            "(its Knative Service is gone; register it again to deploy it)"
        )
    active, last = status.get("active_rollout"), status.get("last_rollout")
    if active:
        lines.append(
            f"  active:  {active['id']}  {active['phase']}  {step_text(active)}  "
            f"{short_image(active['image'])}"
        )
        if active.get("deadline_at"):
            then = AT_DEADLINE.get(active["phase"], "ends")
            lines.append(f"  deadline: {active['deadline_at']}: {then}")
        if active.get("analysis"):
            lines.append(f"  live:    {render_figures(active['analysis'])}")
    else:
        lines.append("  active:  none")
    if last:
        lines.append(f"  last:    {last['id']}  {last['phase']}  {short_image(last['image'])}")
        lines.append(f"           {one_line(last.get('reason'))}")
    return "\n".join(lines)


# Phases in which the candidate holds (or is about to hold) steps[step] % of the traffic.
_ON_A_STEP = frozenset({"SHIFTING", "PAUSED", "AWAITING_APPROVAL"})


def step_text(active: dict[str, Any]) -> str:
    """`step 2 of 3 (50%)` while on a step (counted from 1, as commands word it), else the steps."""
    steps, index = active.get("steps") or [], active.get("step")
    if active.get("phase") in _ON_A_STEP and isinstance(index, int) and 0 <= index < len(steps):
        return f"step {index + 1} of {len(steps)} ({steps[index]}%)"
    return f"steps {steps}"


def render_figures(figures: dict[str, Any]) -> str:
    """The running step's live figures in one line: verdict, measured rates, what is still needed."""
    verdict = str(figures.get("verdict") or "").upper()
    reason = one_line(figures.get("reason"))
    parts = [f"step {figures.get('percent', '?')}%", verdict, reason]
    if figures.get("needed_requests") and "more candidate requests" not in reason:
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


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print `data` as JSON with --json, else the human `text`."""
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text, flush=True)


def _cmd_register(args: argparse.Namespace) -> int:
    name, created = register_file(resolve(), Path(args.file))
    emit(
        args,
        {"service": name, "created": created},
        f"{'registered' if created else 'updated'} service {name}",
    )
    return 0


def expected_rollouts(
    get: Callable[[str], Any], image: str, digest: str, message_id: str
) -> dict[str, str]:
    """The id of the rollout each service following the image's repository gets from this push."""
    from shared.steps.ingest import rollout_id  # the ids ingest gives rollouts are deterministic

    repository = split_image(image).repository
    return {
        s["service"]: rollout_id(s["service"], digest, message_id)
        for s in get("/services?limit=100")["services"]
        if s["image_repository"] == repository and not s.get("deleted_at")
    }


def accepted(
    target: Target, image: str, digest: str, message_id: str, timeout: float | None = None
) -> tuple[list[str], list[str]]:
    """Wait until hekaton started or ignored a pushed image: (rollout ids, ignore reasons)."""
    timeout = ACCEPT_TIMEOUT if timeout is None else timeout
    api = Patient(target, timeout)
    expected = expected_rollouts(api.fetch, image, digest, message_id)
    followers = list(expected)
    while time.monotonic() < api.deadline:
        started = [rid for rid in expected.values() if _exists(api, rid)]
        ignored = [
            e["reason"]
            for e in api.fetch("/ignored?limit=100")["ignored"]
            if e["function"] == "ingest"
            and (e["message_id"] == message_id or e["message_id"].startswith(f"{message_id}-"))
        ]
        if (started or ignored) and len(started) + len(ignored) >= max(1, len(followers)):
            return started, ignored
        time.sleep(0.2)
    raise CommandError(
        f"hekaton neither started nor ignored message {message_id} within {timeout:.0f}s "
        "(is the ingest function running? locally `hekaton ps`, in GCP its log)"
    )


def _exists(api: Patient, rollout_id: str) -> bool:
    try:
        api.fetch(f"/rollouts/{quote(rollout_id, safe='')}?after=1000000")
    except Refusal as refusal:
        if refusal.status == 404:
            return False
        raise
    return True


def _cmd_push(args: argparse.Namespace) -> int:
    target = resolve()
    if target.google is not None and not args.delete and "@" not in args.image:
        raise CommandError(
            f"against GCP, give the image's digest ({args.image}@sha256:...): only the local "
            "registry's digests can be derived from a tag"
        )
    body = registry_message(args.image, delete=args.delete)
    message_id = publish_push(target, body)
    digest = body["digest"].split("@", 1)[1]
    if args.no_wait or args.delete:
        try:
            expected = (
                {}
                if args.delete
                else expected_rollouts(partial(fetch, target), args.image, digest, message_id)
            )
        except CommandError:
            expected = {}  # the push is out; only the hint of what to watch is missing
        follow = "".join(
            f"\nfollow it: hekaton watch {name} --rollout {rid}" for name, rid in expected.items()
        )
        emit(
            args,
            {"message_id": message_id, "published": body, "rollouts": expected},
            f"published to topic {REGISTRY_TOPIC}: {json.dumps(body)} (message {message_id})"
            + follow,
        )
        return 0
    try:
        return _follow_push(args, target, digest, message_id)
    except CommandError as exc:
        # The push is out: saying "refused" would invite a second one. Say what is known.
        raise CommandError(
            f"published {args.image} to topic {REGISTRY_TOPIC} as message {message_id}, but "
            f"could not follow what hekaton made of it: {exc}; `hekaton status SERVICE` shows "
            "it once hekaton answers (do not push again)"
        ) from None


def _follow_push(args: argparse.Namespace, target: Target, digest: str, message_id: str) -> int:
    started, ignored = accepted(target, args.image, digest, message_id)
    if not started:
        emit(
            args,
            {"message_id": message_id, "ignored": ignored},
            "\n".join(f"ignored: {reason}" for reason in ignored),
        )
        return 1
    ended = [follow_rollout(args, target, rid) for rid in started]
    if args.json:
        print(json.dumps(ended, indent=2))
    return 0 if all(r["phase"] == "PROMOTED" for r in ended) else 1


def follow_rollout(args: argparse.Namespace, target: Target, rollout_id: str) -> dict[str, Any]:
    """Follow a rollout to its end, printing each decision (unless --json); return it."""

    def show(_rollout: dict[str, Any], decision: dict[str, Any]) -> None:
        if not args.json:
            print(render_decision(decision), flush=True)

    shown = {"figures": "", "hint": False}

    def progress(rollout: dict[str, Any], figures: dict[str, Any]) -> None:
        line = render_figures(figures)
        if args.json or line == shown["figures"]:
            return  # the same figures again (no traffic yet): one line says it
        shown["figures"] = line
        print(render_progress(figures), flush=True)
        measured = figures.get("candidate") is not None and not figures.get("problem")
        if measured and not shown["hint"] and not figures["candidate"].get("requests"):
            shown["hint"] = True
            print(
                f"  (no request has reached the candidate yet: the analysis judges user traffic; "
                f"on the local stack `hekaton load {rollout.get('service') or 'SERVICE'}` sends "
                "some)",
                flush=True,
            )

    ended = wait_for_rollout(
        target,
        "",
        rollout_id=rollout_id,
        timeout=getattr(args, "timeout", 600.0),
        on_decision=show,
        on_progress=progress,
    )
    if not args.json:
        print(f"{ended['id']} ended {ended['phase']}: {one_line(ended.get('reason'))}")
    return ended


def _cmd_status(args: argparse.Namespace) -> int:
    status = fetch(resolve(), f"/services/{quote(args.service, safe='')}")
    emit(args, status, render_status(status))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    path = f"/services/{quote(args.service, safe='')}/rollouts?limit={args.limit}"
    page = fetch(resolve(), path + (f"&cursor={args.cursor}" if args.cursor else ""))
    text = render_history(page["rollouts"])
    if page.get("next_cursor"):
        text += f"\n(more: hekaton history {args.service} --cursor {page['next_cursor']})"
    emit(args, page["rollouts"] if args.json else page, text)
    return 0


def _named_rollout(api: Patient, service: str, rollout_id: str) -> dict[str, Any]:
    """The named rollout; an unknown id is an error after START_GRACE (at once if it cannot be one
    of the service's: theirs all start with its name), never after the whole timeout."""
    grace = START_GRACE if rollout_id.startswith(f"{service}-") else 0.0
    deadline = time.monotonic() + grace
    while True:
        try:
            return dict(api.fetch(f"/rollouts/{quote(rollout_id, safe='')}"))
        except Refusal as refusal:
            if refusal.status != 404:
                raise
            if time.monotonic() >= deadline:
                if not grace:
                    raise
                raise Refusal(
                    404,
                    f"{refusal} (not started within {grace:g}s: if hekaton ignored the push, "
                    "e.g. a tag outside the service's filter, `hekaton ignored` says why)",
                ) from None
        time.sleep(0.2)  # `push --no-wait` printed the id: ingest may not have started it yet


def _cmd_watch(args: argparse.Namespace) -> int:
    target = resolve()
    api = Patient(target, getattr(args, "timeout", 600.0))
    status = api.fetch(f"/services/{quote(args.service, safe='')}")  # unknown: the error
    rollout_id = args.rollout
    if rollout_id is not None:
        named = _named_rollout(api, args.service, rollout_id)
        if named.get("service") != args.service:
            raise CommandError(
                f"rollout {rollout_id} is a rollout of {named.get('service')}, not {args.service}"
            )
    elif status["active_rollout"] is not None:
        rollout_id = status["active_rollout"]["id"]
    elif status["last_rollout"]:
        last = status["last_rollout"]
        if not args.json:
            print(
                f"no rollout of {args.service} in flight; the last one, {last['id']}, "
                f"ended {last['phase']}:"
            )
        rollout_id = last["id"]
    else:
        raise CommandError(f"service {args.service} has no rollouts yet")
    if not args.json:
        print(f"watching {args.service} (Ctrl-C to stop)", flush=True)
    ended = follow_rollout(args, target, rollout_id)
    if args.json:
        print(json.dumps(ended, indent=2))
    return 0 if ended["phase"] == "PROMOTED" else 1


def fetch_pages(target: Target, path: str, key: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` items of a paginated list, following its cursors."""
    items: list[dict[str, Any]] = []
    cursor = ""
    while len(items) < limit:
        page = fetch(target, f"{path}?limit={min(100, limit - len(items))}&cursor={cursor}")
        items += page[key]
        cursor = page.get("next_cursor") or ""
        if not cursor:
            break
    return items


def _cmd_services(args: argparse.Namespace) -> int:
    items = fetch_pages(resolve(), "/services", "services", args.limit)
    lines = [
        f"{s['service']:<24} {s['namespace']:<12} {s['stable_revision'] or '-':<32} "
        f"{'deleted' if s.get('deleted_at') else (s['active_rollout_id'] or '')}".rstrip()
        for s in items
    ]
    emit(args, items, "\n".join(lines) or "no services registered")
    return 0


def _cmd_ignored(args: argparse.Namespace) -> int:
    items = fetch_pages(resolve(), "/ignored", "ignored", args.limit)
    lines = [f"{(e['at'] or '')[:19]}  {e['function']:<9} {one_line(e['reason'])}" for e in items]
    emit(args, items, "\n".join(lines) or "nothing ignored")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"reason": args.reason}
    if args.to:
        body["revision"] = args.to
    answer = control(resolve(), "POST", f"/services/{quote(args.service, safe='')}/rollback", body)
    ended = (
        f"; rollout {answer['rollout_id']} ended ROLLED_BACK" if answer.get("ended_active") else ""
    )
    again = " [already applied]" if answer["status"] == "repeated" else ""
    emit(
        args,
        answer,
        f"rolled back {args.service}: all traffic on {answer.get('target_revision')}{ended}{again}",
    )
    return 0


def guard(fn: Any) -> Any:
    """Run a command: exit 1 with hekaton's reason on a refusal, 2 on any other error."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except Refusal as refused:
            print(f"refused: {refused}", file=sys.stderr)
            return 1
        except (CommandError, TargetError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


_guard = guard


def register(subparsers: Any) -> None:
    """Add the rollout commands to the `hekaton` parser."""
    p = subparsers.add_parser("register", help="register (or update) a service from a YAML spec")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_register))
    p = subparsers.add_parser(
        "push",
        help="publish an Artifact Registry push of IMAGE[:TAG][@DIGEST] to `gcr` and follow "
        "the rollout it starts (exit 0 on PROMOTED, 1 when ignored or not promoted)",
    )
    p.add_argument("image")
    p.add_argument("--delete", action="store_true", help="send a DELETE of the tag instead")
    p.add_argument("--no-wait", action="store_true", help="return once published")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_push))
    p = subparsers.add_parser(
        "status", help="stable revision, live traffic, active and last rollout"
    )
    p.add_argument("service")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_status))
    p = subparsers.add_parser("history", help="a service's rollouts, newest first, with decisions")
    p.add_argument("service")
    p.add_argument("--limit", type=how_many(100), default=20)
    p.add_argument("--cursor", help="next page (printed at the end of a full page)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_history))
    p = subparsers.add_parser(
        "watch", help="follow the active rollout; exit 0 on PROMOTED, 1 otherwise"
    )
    p.add_argument("service")
    p.add_argument("--rollout", help="follow this rollout id instead of the active one")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_watch))
    p = subparsers.add_parser("services", help="registered services, their stable revision")
    p.add_argument("--limit", type=how_many(MAX_LISTED), default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_services))
    p = subparsers.add_parser(
        "ignored", help="messages and requests hekaton refused or ignored, newest first, and why"
    )
    p.add_argument("--limit", type=how_many(MAX_LISTED), default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_ignored))
    p = subparsers.add_parser(
        "rollback", help="traffic back to the stable (or a named, served) revision, now"
    )
    p.add_argument("service")
    p.add_argument("--to", help="revision name or full image digest (sha256:<64 hex>)")
    p.add_argument("--reason", default="operator rollback")
    p.add_argument(
        "--no-wait", action="store_true", help="accepted; a rollback is done when answered"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(_cmd_rollback))
