"""`hekaton watch --rollout ID`: an unknown id is reported at once, not waited for."""

from __future__ import annotations

import argparse
import time
from typing import Any

import pytest

from cli import rollout_commands
from cli.rollout_commands import CommandError
from cli.target import Target


def test_watch_of_an_unknown_rollout_says_so_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fetch(target: Target, path: str) -> Any:
        asked.append(path)
        if path.startswith("/rollouts/"):
            raise CommandError("rollout 'nope' does not exist")
        return {"active_rollout": None, "last_rollout": None}

    monkeypatch.setattr(rollout_commands, "resolve", lambda: Target("p", "http://status"))
    monkeypatch.setattr(rollout_commands, "fetch", fetch)
    started = time.monotonic()
    args = argparse.Namespace(service="iris", rollout="nope", timeout=600.0)
    with pytest.raises(CommandError, match="does not exist"):
        rollout_commands._cmd_watch(args)
    assert time.monotonic() - started < 1
    assert asked == ["/services/iris", "/rollouts/nope"]


def test_list_commands_follow_the_cursors(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    pages = {
        "/ignored?limit=3&cursor=": {
            "ignored": [_ignored("a"), _ignored("b")],
            "next_cursor": "c1",
        },
        "/ignored?limit=1&cursor=c1": {"ignored": [_ignored("c")], "next_cursor": "c2"},
    }
    monkeypatch.setattr(rollout_commands, "resolve", lambda: Target("p", "http://status"))
    monkeypatch.setattr(rollout_commands, "fetch", lambda _t, path: pages[path])
    assert rollout_commands._cmd_ignored(argparse.Namespace(limit=3, json=False)) == 0
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()] == ["a", "b", "c"]


def _ignored(reason: str) -> dict[str, Any]:
    return {"at": "2026-12-01T10:00:00+00:00", "function": "ingest", "reason": reason}
