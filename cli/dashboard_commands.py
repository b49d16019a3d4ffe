"""`hekaton dashboard`: print (and open) the dashboard's URL, signed in with a short-lived token.

The token travels in the URL fragment (`#token=…`): browsers never send a fragment to the server,
so it stays out of request lines and access logs; the page moves it to sessionStorage and drops it
from the address bar.
"""

from __future__ import annotations

import argparse
import os
import sys
import webbrowser
from typing import Any
from urllib.parse import quote

from cli.rollout_commands import emit, guard
from cli.target import Target, TargetError, resolve
from shared.api.dashboard import PATH

DEFAULT_TTL_SECONDS = 3600


def dashboard_url(target: Target) -> str:
    """The page's URL (the read API's /dashboard)."""
    if not target.status_url:
        raise TargetError("no read API URL: set HEKATON_STATUS_URL or start the local stack")
    return target.status_url.rstrip("/") + PATH


def sign_in_token(target: Target, ttl_seconds: int) -> str:
    """$HEKATON_TOKEN, else a token of the local stack valid for `ttl_seconds`."""
    given = os.environ.get("HEKATON_TOKEN")
    if given:
        return given.strip()
    if target.stack_dir is None:
        raise TargetError(
            "no token for the dashboard: set HEKATON_TOKEN (in GCP: a Google ID token for the "
            "status function's URL)"
        )
    from local.auth_keys import issue_token  # only the local stack issues tokens

    try:
        return issue_token(target.stack_dir, ttl_seconds=ttl_seconds)
    except FileNotFoundError as exc:
        raise TargetError(str(exc)) from None


def can_open_browser() -> bool:
    """Whether a graphical browser can be opened (never a console browser that takes the terminal)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _dashboard(args: argparse.Namespace) -> int:
    target = resolve()
    url = dashboard_url(target)
    signed_in = f"{url}#token={quote(sign_in_token(target, args.ttl), safe='')}"
    opened = False
    if not args.no_open and can_open_browser():
        try:
            opened = webbrowser.open(signed_in, new=2)
        except webbrowser.Error:
            opened = False
    note = "opened in your browser" if opened else "open it in a browser"
    text = (
        f"{signed_in}\n({note}; the sign-in expires in {args.ttl} s: run `hekaton dashboard` again)"
    )
    emit(args, {"url": url, "signed_in_url": signed_in, "opened": opened}, text)
    return 0


def register(subparsers: Any) -> None:
    """Add `dashboard` to the `hekaton` parser."""
    p = subparsers.add_parser(
        "dashboard", help="print (and open) the live dashboard's URL, signed in"
    )
    p.add_argument("--no-open", action="store_true", help="only print the URL")
    p.add_argument(
        "--ttl",
        type=int,
        default=DEFAULT_TTL_SECONDS,
        help=f"seconds the sign-in lasts (default {DEFAULT_TTL_SECONDS}; local stack only)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=guard(_dashboard))
