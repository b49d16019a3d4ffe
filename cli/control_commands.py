"""`hekaton abort | promote | pause | resume | approve | delete | token`: steering through the control API."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from cli.api_client import control
from cli.rollout_commands import emit, follow_rollout, guard
from cli.target import TargetError, resolve, state_dir

STEERING = {
    "abort": "roll the active rollout back now (stable takes all traffic)",
    "promote": "skip the remaining steps and promote (the spec's approval gate still applies)",
    "pause": "hold the active rollout where it is (rolled back if still paused at --for)",
    "resume": "carry on a paused rollout (its current step bakes again)",
    "approve": "pass the spec's approval gate: promote now",
}
WAITS_FOR_PROMOTION = ("promote", "approve")


def _steer(args: argparse.Namespace) -> int:
    target = resolve()
    body: dict[str, Any] = {"reason": args.reason}
    if getattr(args, "for_seconds", None) is not None:
        body["deadline_seconds"] = args.for_seconds
    answer = control(
        target, "POST", f"/services/{quote(args.service, safe='')}/{args.command}", body
    )
    repeated = " [already applied]" if answer["status"] == "repeated" else ""
    if args.command in WAITS_FOR_PROMOTION and not args.no_wait and answer.get("rollout_id"):
        if not args.json:
            print(f"{args.command}: {answer['detail']}{repeated}", flush=True)
        ended = follow_rollout(args, target, answer["rollout_id"])
        if args.json:
            emit(args, {**answer, "ended": ended}, "")
        return 0 if ended["phase"] == "PROMOTED" else 1
    emit(args, answer, f"{args.command}: {answer['detail']}{repeated} (now {answer['phase']})")
    return 0


def _delete(args: argparse.Namespace) -> int:
    answer = control(
        resolve(), "DELETE", f"/services/{quote(args.service, safe='')}", {"reason": args.reason}
    )
    emit(args, answer, f"{answer['detail']}; its history stays readable (`hekaton history`)")
    return 0


def _token(args: argparse.Namespace) -> int:
    from local.auth_keys import issue_token  # only the local stack issues tokens

    try:
        token = issue_token(state_dir(), args.principal, ttl_seconds=args.ttl)
    except FileNotFoundError as exc:
        raise TargetError(str(exc)) from None
    emit(args, {"token": token}, token)
    return 0


def register(subparsers: Any) -> None:
    """Add the control commands to the `hekaton` parser."""
    for name, text in STEERING.items():
        p = subparsers.add_parser(name, help=text)
        p.add_argument("service")
        p.add_argument("--reason", default="", help="why (recorded with who asked)")
        if name == "pause":
            p.add_argument(
                "--for",
                dest="for_seconds",
                type=float,
                help="the pause's deadline in seconds (default 3600)",
            )
        # promote/approve follow the rollout to its end; the others are done when answered.
        p.add_argument("--no-wait", action="store_true", help="do not follow it to its end")
        p.add_argument("--timeout", type=float, default=600.0)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=guard(_steer), command=name)
    p = subparsers.add_parser(
        "delete", help="remove a service's Knative Service, end its rollout; history stays"
    )
    p.add_argument("service")
    p.add_argument("--reason", default="")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guard(_delete))
    p = subparsers.add_parser("token", help="print a token of the local stack, for curl")
    p.add_argument("--principal", help="who the token names (default $USER@hekaton.local)")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guard(_token))
