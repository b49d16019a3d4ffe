"""`hekaton context add | use | list | remove`: named GCP deployments the other commands can target."""

from __future__ import annotations

import argparse
from typing import Any

from cli.contexts import LOCAL, Context, ContextError, ContextStore
from cli.rollout_commands import emit, guard
from cli.target import TargetError, gcp_target


def _store() -> ContextStore:
    return ContextStore()


def _add(args: argparse.Namespace) -> int:
    context = Context(
        project=args.name_project,
        region=args.name_region,
        status_url=args.name_status_url,
        control_url=args.name_control_url,
    )
    try:
        target = gcp_target(context)  # checks the fields and that the URLs can be derived
        store = _store()
        created = store.add(args.name, context)
        if args.use:
            store.use(args.name)
    except ContextError as exc:
        raise TargetError(str(exc)) from None
    verb = "added" if created else "updated"
    now = "; now using it" if args.use else f" (use it: `hekaton context use {args.name}`)"
    emit(
        args,
        {"name": args.name, "created": created, "status_url": target.status_url,
         "control_url": target.control_url, "current": bool(args.use)},
        f"{verb} context {args.name}: project {context.project}, status {target.status_url}, "
        f"control {target.control_url}{now}",
    )  # fmt: skip
    return 0


def _use(args: argparse.Namespace) -> int:
    return _change(args, ContextStore.use, {"current": args.name}, f"now using context {args.name}")


def _remove(args: argparse.Namespace) -> int:
    return _change(
        args, ContextStore.remove, {"removed": args.name}, f"removed context {args.name}"
    )


def _change(args: argparse.Namespace, action: Any, data: dict[str, str], text: str) -> int:
    """Apply `action(store, name)`; a ContextError becomes the command's error."""
    try:
        action(_store(), args.name)
    except ContextError as exc:
        raise TargetError(str(exc)) from None
    emit(args, data, text)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store()
    try:
        contexts, current = store.all(), store.current() or LOCAL
    except ContextError as exc:
        raise TargetError(str(exc)) from None
    rows = [{"name": LOCAL, "project": "(the local stack)", "current": current == LOCAL}]
    for name, context in sorted(contexts.items()):
        target = gcp_target(context)
        rows.append(
            {"name": name, "project": context.project, "region": context.region,
             "status_url": target.status_url, "control_url": target.control_url,
             "current": current == name}
        )  # fmt: skip
    lines = [
        f"{'*' if row['current'] else ' '} {row['name']:<20} {row['project']:<24} "
        f"{row.get('status_url') or ''}".rstrip()
        for row in rows
    ]
    emit(args, rows, "\n".join(lines))
    return 0


def register(subparsers: Any) -> None:
    """Add `context` and its subcommands to the `hekaton` parser."""
    parent = subparsers.add_parser(
        "context", help="saved GCP deployments (project, region): add, use, list, remove"
    )
    commands = parent.add_subparsers(dest="context_command", metavar="ACTION", required=True)
    p = commands.add_parser("add", help="save a deployment under a name (no secrets are stored)")
    p.add_argument("name")
    # dest names differ from the global --project/--region, which would otherwise overwrite them.
    p.add_argument("--project", dest="name_project", required=True)
    p.add_argument("--region", dest="name_region", help="where its functions run")
    p.add_argument("--status-url", dest="name_status_url", help="override the derived URL")
    p.add_argument("--control-url", dest="name_control_url", help="override the derived URL")
    p.add_argument("--use", action="store_true", help="make it the current context too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guard(_add))
    p = commands.add_parser("use", help=f"make a context current ({LOCAL!r}: the local stack)")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guard(_use))
    p = commands.add_parser("list", help="saved contexts; * marks the current one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guard(_list))
    p = commands.add_parser("remove", help="forget a context")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guard(_remove))
