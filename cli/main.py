"""The ``hekaton`` console script: one argparse parser, subcommands contributed by modules.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, adds its subcommands and sets
``func`` (``args -> exit code``) as their default. Add a module to the tuple to add commands.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "cli.stack_commands",  # up, down, env, ps
    "cli.rollout_commands",  # register, push, status, history, watch, rollback
    "cli.control_commands",  # abort, promote, pause, resume, approve, delete, token
    "cli.demo",  # demo
    "cli.load_commands",  # load
    "cli.dashboard_commands",  # dashboard
    "cli.dlq_commands",  # dlq list, dlq replay
    "cli.context_commands",  # context add | use | list | remove
)


# Commands about the local stack only: a deployment flag would be silently ignored, so it is refused.
LOCAL_ONLY = frozenset({"up", "down", "env", "ps", "demo", "load", "token"})


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every module's subcommands."""
    parser = argparse.ArgumentParser(
        prog="hekaton",
        description="Progressive delivery for ML model APIs on Knative, and its local stack.",
    )
    # Own dests: a subcommand's option of the same name (`up --project`) must not overwrite them.
    where = parser.add_argument_group(
        "which deployment (default: the current context, else the local stack)"
    )
    where.add_argument(
        "--project", dest="target_project", help="the GCP project hekaton is deployed in"
    )
    where.add_argument(
        "--region", dest="target_region", help="the region of its functions (e.g. europe-west1)"
    )
    where.add_argument(
        "--context", dest="target_context", help="a saved context (`hekaton context list`); `local`"
    )
    where.add_argument(
        "--status-url", dest="target_status_url", help="the read API's URL (default: derived)"
    )
    where.add_argument(
        "--control-url", dest="target_control_url", help="the control API's URL (default: derived)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns its exit code."""
    args = build_parser().parse_args(argv)
    from cli.target import Choice, choose

    choice = Choice(
        project=args.target_project,
        region=args.target_region,
        context=args.target_context,
        status_url=args.target_status_url,
        control_url=args.target_control_url,
    )
    if args.command in LOCAL_ONLY and choice != Choice(context="local") and choice != Choice():
        print(
            f"error: `hekaton {args.command}` works on the local stack only; drop "
            "--project/--region/--context/--status-url/--control-url",
            file=sys.stderr,
        )
        return 2
    choose(choice)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`hekaton history iris | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
