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


def test_following_a_rollout_never_prints_figures_older_than_a_decision_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def decision(seq: int, at: str) -> dict[str, Any]:
        return {"seq": seq, "at": f"2026-12-01T10:00:{at}+00:00"}

    def figures(at: str) -> dict[str, Any]:
        return {"at": f"2026-12-01T10:00:{at}+00:00"}

    polls = iter(
        [
            {
                "phase": "SHIFTING",
                "decisions": [decision(1, "01.000")],
                "analysis": figures("02.000"),
            },
            # The step's last evaluation (24.398) and the decision it led to (24.501) in one poll.
            {
                "phase": "PROMOTING",
                "decisions": [decision(2, "24.501")],
                "analysis": figures("24.398"),
            },
            {"phase": "PROMOTING", "decisions": [], "analysis": figures("24.398")},
            {"phase": "PROMOTED", "decisions": [decision(3, "25.000")], "analysis": None},
        ]
    )
    printed: list[str] = []
    monkeypatch.setattr(
        rollout_commands, "fetch", lambda _t, path: next(polls, {"phase": "PROMOTED"})
    )
    rollout_commands.wait_for_rollout(
        Target("p", "http://status"),
        "iris",
        rollout_id="r-1",
        on_decision=lambda _r, d: printed.append(d["at"][17:23]),
        on_progress=lambda _r, f: printed.append("live " + f["at"][17:23]),
        poll_seconds=0,
    )
    assert printed == ["01.000", "live 02.000", "24.501", "25.000"]
