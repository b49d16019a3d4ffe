"""`hekaton load SERVICE`: user-like requests through the local gateway's main URL (local tooling)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from cli.rollout_commands import CommandError, fetch
from cli.target import Target, state_dir
from local.load import (
    DEFAULT_MAX_REQUESTS,
    LoadConfig,
    LoadError,
    LoadReport,
    LoadRun,
    StackGateway,
    iris_bodies,
    read_bodies,
    service_host,
    stack_gateway,
)

EXIT_RAN = 0
EXIT_NO_ANSWER = 1  # some requests got no HTTP answer at all (the gateway is unreachable)
EXIT_CANNOT = 2  # nothing useful could be sent: no stack, no such service, bad options
EXIT_INTERRUPTED = 130


def service_namespace(gateway: StackGateway, service: str) -> str:
    """The registered service's namespace, from the status API; CommandError saying what to do."""
    if not gateway.status_url:
        raise CommandError(
            "the local stack runs without the status API, so the service's namespace is "
            "unknown: pass --namespace"
        )
    try:
        status = fetch(
            Target(project="local", status_url=gateway.status_url), f"/services/{service}"
        )
    except CommandError as exc:
        raise CommandError(f"{exc}; or pass --namespace to send to it anyway") from exc
    return str(status["namespace"])


def render_report(report: LoadReport) -> str:
    """The short table `hekaton load` prints."""
    how = f"{report.rps:g} req/s for {report.duration:g}s, seed {report.seed}"
    lines = [f"load {report.host} via {report.url} ({how}): {report.state}"]
    sent = f"{report.sent} of {report.planned} planned in {report.elapsed:.1f}s"
    expected = report.expected
    sent += f" ({report.achieved_rps:.1f} req/s; the seeded Poisson schedule expects"
    sent += f" {expected:.0f} ± {math.sqrt(expected):.0f})"
    if report.unsent:
        sent += f", {report.unsent} not sent"
    lines.append(f"  sent        {sent}")
    statuses = "   ".join(f"{code}: {n}" for code, n in sorted(report.by_status.items()))
    lines.append(f"  status      {statuses or '-'}")
    errors = "   ".join(f"{kind}: {n}" for kind, n in sorted(report.errors.items()))
    lines.append(f"  no answer   {errors or 'none'}")
    latency = report.latency_ms
    if latency is not None:
        lines.append(
            f"  latency ms  p50 {latency.p50:.1f}   p90 {latency.p90:.1f}   "
            f"p99 {latency.p99:.1f}   max {latency.max:.1f}"
        )
    counts = report.version_counts()
    total = sum(counts.values())
    versions = "   ".join(
        f"{version}: {n} ({100 * n / total:.1f}%)" for version, n in sorted(counts.items())
    )
    lines.append(f"  versions    {versions or '- (no model_version in the answers)'}")
    return "\n".join(lines)


def _headers(values: list[str]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            raise CommandError(f"--header wants 'Name: value', got {value!r}")
        headers[name.strip()] = text.strip()
    return headers


def _token_headers(token: str) -> dict[str, str]:
    """`--token`: `auto` mints one of the local stack ($USER@hekaton.local), `none` sends none."""
    if token == "none":
        return {}
    if token == "auto":
        from local.auth_keys import issue_token

        try:
            token = issue_token(state_dir())
        except FileNotFoundError:
            return {}  # no local signing key: nothing to send
    return {"Authorization": f"Bearer {token}"}


def _cmd_load(args: argparse.Namespace) -> int:
    try:
        gateway = stack_gateway()
        namespace = args.namespace or service_namespace(gateway, args.service)
        config = LoadConfig(
            gateway_url=gateway.url,
            host=service_host(args.service, namespace, gateway.domain),
            bodies=read_bodies(Path(args.bodies)) if args.bodies else iris_bodies(),
            rps=args.rps,
            duration=args.duration,
            max_requests=args.max_requests,
            seed=args.seed,
            path=args.path,
            headers={**_token_headers(args.token), **_headers(args.header)},
            concurrency=args.concurrency,
            timeout=args.timeout,
        )
    except (LoadError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANNOT
    run = LoadRun(config).start()
    interrupted = False
    try:
        run.wait()
    except KeyboardInterrupt:
        interrupted = True
    report = run.stop()
    if report.state == "no_route":
        print(
            f"error: the gateway has no route for {config.host}: service {args.service} is not "
            f"deployed in namespace {namespace} (see `hekaton status {args.service}`)",
            file=sys.stderr,
        )
        return EXIT_CANNOT
    print(json.dumps(report.to_json(), indent=2) if args.json else render_report(report))
    if interrupted:
        return EXIT_INTERRUPTED
    if report.errors:
        print(
            f"error: {sum(report.errors.values())} of {report.sent} requests got no answer "
            f"from the gateway at {gateway.url} (see `hekaton ps`)",
            file=sys.stderr,
        )
        return EXIT_NO_ANSWER
    return EXIT_RAN


def register(subparsers: Any) -> None:
    """Add `load` to the `hekaton` parser."""
    p = subparsers.add_parser(
        "load",
        help="send user-like requests to SERVICE's main URL through the local stack's gateway",
        description=(
            "Open-loop Poisson arrivals (seeded) at --rps for --duration seconds, sent to "
            "Host <service>.<namespace>.<domain> on the local gateway, so the gateway splits "
            "them as it splits users' traffic. Prints what was sent and what answered, per "
            "status and per model_version. Exit 0 when it ran, 1 if requests got no answer, "
            "2 when it could not run (no stack, no such service), 130 on Ctrl-C."
        ),
    )
    p.add_argument("service")
    p.add_argument("--rps", type=float, default=10.0, help="mean request rate (%(default)s)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (%(default)s)")
    p.add_argument(
        "--namespace", help="the service's namespace (default: the registered service's)"
    )
    p.add_argument("--path", default="/predict", help="request path (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="schedule and body choice (%(default)s)")
    p.add_argument(
        "--bodies",
        metavar="FILE",
        help="JSONL file, one request body per line (default: 30 iris flowers)",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    p.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help="send at most this many (%(default)s)",
    )
    p.add_argument(
        "--concurrency", type=int, default=8, help="connections in parallel (%(default)s)"
    )
    p.add_argument(
        "--token",
        default="auto",
        help="bearer token for services with an auth: section; auto (default) mints the local "
        "stack's, none sends none",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="per request, s (%(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_load)
