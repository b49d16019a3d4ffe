"""`hekaton dlq list | replay`: the messages Pub/Sub dead-lettered, and republishing them once fixed."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from cli.api_client import Refusal, Unavailable, control
from cli.rollout_commands import MAX_LISTED, emit, fetch_pages, guard, how_many, one_line
from cli.target import TargetError, resolve
from events.pubsub import DEAD_LETTER_ID

# A replay is only published; what it does is the receiving function's call.
AFTER_REPLAY = (
    "(a step whose rollout moved on meanwhile, e.g. finished by the tick once the dependency came "
    "back, drops it as stale: `hekaton ignored` shows that)"
)


def _list(args: argparse.Namespace) -> int:
    items = fetch_pages(resolve(), "/dead-letters", "dead_letters", args.limit)
    lines = []
    for d in items:
        replayed = f"replayed {len(d['replays'])}x" if d["replays"] else "not replayed"
        if d.get("replaying"):
            claim = d["replaying"]
            replayed += f", being replayed by {claim['principal']} since {claim['at'][:19]}"
        lines.append(
            f"{d['id']}  {d['first_seen'][:19]}  from {d['source_subscription'] or '?'} "
            f"(topic {d['original_topic'] or 'unknown'}) after {d['attempts'] or '?'} attempts, "
            f"{replayed}\n    {one_line(d['excerpt'])}"
        )
    emit(args, items, "\n".join(lines) or "no dead letters")
    return 0


def _replay_one(dead_letter: str, force: bool) -> dict[str, Any]:
    path = f"/dead-letters/{quote(dead_letter, safe='')}/replay"
    answer: dict[str, Any] = control(resolve(), "POST", path, {"force": force})
    return answer


def _replay(args: argparse.Namespace) -> int:
    if args.id is None and not args.all:
        raise TargetError("name a dead letter ID (see `hekaton dlq list`), or --all")
    if args.id is not None and args.all:
        raise TargetError("name a dead letter ID or --all, not both")
    if args.id is not None and not DEAD_LETTER_ID.fullmatch(args.id):
        raise Refusal(
            404,
            f"no dead letter {args.id[:120]!r}: ids are 'dl-' then letters, digits, '-' and '_' "
            "(like dl-9aa78f31a51d…); see `hekaton dlq list`",
        )
    if args.id is not None:
        answer = _replay_one(args.id, args.force)
        done = answer["replay"]
        emit(
            args,
            answer,
            f"replayed {args.id} to {done['topic']} as message {done['message_id']}\n{AFTER_REPLAY}",
        )
        return 0
    candidates = [
        d
        for d in fetch_pages(resolve(), "/dead-letters", "dead_letters", MAX_LISTED)
        if args.force or not d["replays"]
    ]
    replayed: list[dict[str, Any]] = []
    refused: list[dict[str, str]] = []
    left: list[str] = []  # not tried: hekaton stopped answering
    outage: Unavailable | None = None
    for n, d in enumerate(candidates):
        try:
            replayed.append(_replay_one(d["id"], args.force))
        except Refusal as exc:
            refused.append({"id": d["id"], "reason": str(exc)})
        except Unavailable as exc:
            # What was replayed must still be said, or a second --all --force would repeat it.
            outage, left = exc, [c["id"] for c in candidates[n:]]
            break
    lines = [
        f"replayed {a['dead_letter']['id']} to {a['replay']['topic']} "
        f"as message {a['replay']['message_id']}"
        for a in replayed
    ]
    for r in refused:
        print(f"refused: {r['id']}: {r['reason']}", file=sys.stderr)
    if not candidates:
        lines.append("no dead letters to replay (replayed ones need --force)")
    elif replayed:
        lines.append(AFTER_REPLAY)
    emit(args, {"replayed": replayed, "refused": refused, "not_tried": left}, "\n".join(lines))
    if outage is not None:
        print(
            f"error: stopped after {len(replayed) + len(refused)} of {len(candidates)}: {outage}; "
            f"not tried: {', '.join(left)} (`hekaton dlq replay --all` again once hekaton "
            "answers: the replayed ones are skipped)",
            file=sys.stderr,
        )
        return 2
    return 1 if refused else 0


def register(subparsers: Any) -> None:
    """Add `hekaton dlq` to the parser."""
    dlq = subparsers.add_parser("dlq", help="dead letters: list them, replay them once fixed")
    commands = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)
    p = commands.add_parser("list", help="what was dead-lettered, from where, after how many tries")
    p.add_argument("--limit", type=how_many(MAX_LISTED), default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guard(_list))
    p = commands.add_parser("replay", help="republish dead letters to their original topic")
    p.add_argument("id", nargs="?", help="a dead letter's id (from `hekaton dlq list`)")
    p.add_argument("--all", action="store_true", help="every dead letter not yet replayed")
    p.add_argument("--force", action="store_true", help="replay even if replayed before")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guard(_replay))
