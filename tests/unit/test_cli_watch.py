"""`hekaton watch` and `push`: an unknown id is reported soon, an API outage is waited out."""

from __future__ import annotations

import argparse
import time
from typing import Any

import pytest

from cli import rollout_commands
from cli.api_client import Refusal, Unavailable
from cli.target import Target


def test_watch_of_an_unknown_rollout_says_so_after_the_start_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    def fetch(target: Target, path: str) -> Any:
        asked.append(path)
        if path.startswith("/rollouts/"):
            raise Refusal(404, f"rollout {path.split('/')[-1]!r} does not exist")
        return {"active_rollout": None, "last_rollout": None}

    monkeypatch.setattr(rollout_commands, "resolve", lambda: Target("p", "http://status"))
    monkeypatch.setattr(rollout_commands, "fetch", fetch)
    monkeypatch.setattr(rollout_commands, "START_GRACE", 0.5)
    started = time.monotonic()
    args = argparse.Namespace(service="iris", rollout="iris-0123456789ab-abcdef", timeout=600.0)
    with pytest.raises(
        Refusal, match=r"does not exist \(not started within 0.5s: .*`hekaton ignored`"
    ):
        rollout_commands._cmd_watch(args)
    assert time.monotonic() - started < 5  # the grace, not the 600 s timeout
    assert asked[0] == "/services/iris"
    assert set(asked[1:]) == {"/rollouts/iris-0123456789ab-abcdef"}
    assert len(asked) >= 3  # asked again within the grace: a just-pushed image may start it

    # An id that cannot be iris's (they all start with "iris-") is refused at the first answer.
    asked.clear()
    args = argparse.Namespace(service="iris", rollout="nope", timeout=600.0)
    with pytest.raises(Refusal, match="'nope' does not exist"):
        rollout_commands._cmd_watch(args)
    assert asked == ["/services/iris", "/rollouts/nope"]


def test_a_push_published_while_hekaton_cannot_answer_says_it_was_published(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Firestore down after the publish: exit 2 naming the message, never "refused"."""
    outage = Unavailable(503, "the read API at http://status could not answer (503): down")

    def fetch(target: Target, path: str) -> Any:
        raise outage

    monkeypatch.setattr(rollout_commands, "resolve", lambda: Target("p", "http://status"))
    monkeypatch.setattr(rollout_commands, "fetch", fetch)
    monkeypatch.setattr(rollout_commands, "publish_push", lambda _t, _body: "m-42")
    monkeypatch.setattr(rollout_commands, "ACCEPT_TIMEOUT", 0.5)  # how long an outage is waited out
    args = argparse.Namespace(
        image="us-docker.pkg.dev/demo/models/iris:v2",
        delete=False,
        no_wait=False,
        timeout=1.0,
        json=False,
    )
    assert rollout_commands.guard(rollout_commands._cmd_push)(args) == 2
    notice, error = capsys.readouterr().err.splitlines()
    assert notice == f"  (waiting: {outage})"  # once, however many reads met the outage
    assert error.startswith("error: published us-docker.pkg.dev/demo/models/iris:v2")
    assert "as message m-42" in error and "do not push again" in error and "(503)" in error
    assert "hekaton could not answer within the 0.5s this command waits" in error
    assert "refused" not in error


def test_following_waits_an_outage_out_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    answers: list[Any] = [
        Unavailable(503, "the read API could not answer (503): Firestore down"),
        Unavailable(503, "the read API could not answer (503): Firestore down"),
        {"phase": "PROMOTED", "decisions": []},
        {"id": "r-1", "phase": "PROMOTED", "decisions": []},
    ]

    def fetch(target: Target, path: str) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(rollout_commands, "fetch", fetch)
    ended = rollout_commands.wait_for_rollout(
        Target("p", "http://status"), "iris", rollout_id="r-1", timeout=30, poll_seconds=0.01
    )
    assert ended["phase"] == "PROMOTED" and answers == []
    assert capsys.readouterr().err.count("(waiting: ") == 1


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


def test_the_same_figures_print_once_and_no_traffic_says_how_to_send_some(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def figures(at: str, requests: int) -> dict[str, Any]:
        return {
            "at": f"2026-12-01T10:00:{at}+00:00",
            "percent": 10,
            "verdict": "continue",
            "reason": "no candidate traffic yet" if not requests else f"{requests} requests",
            "candidate": {"requests": requests, "errors": 0, "slow": 0},
        }

    def follow(*_args: Any, on_progress: Any, **_kwargs: Any) -> dict[str, Any]:
        rollout = {"id": "r-1", "service": "iris"}
        for f in (figures("01", 0), figures("02", 0), figures("03", 0), figures("04", 12)):
            on_progress(rollout, f)
        return {"id": "r-1", "phase": "PROMOTED", "reason": "done"}

    monkeypatch.setattr(rollout_commands, "wait_for_rollout", follow)
    args = argparse.Namespace(json=False, timeout=10.0)
    rollout_commands.follow_rollout(args, Target("p", "http://status"), "r-1")

    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "analysing" in line] == [
        line for line in lines if "no candidate traffic yet" in line or "12 requests" in line
    ]
    assert sum("no candidate traffic yet" in line for line in lines) == 1
    assert sum("12 requests" in line for line in lines) == 1
    assert sum("`hekaton load iris` sends some" in line for line in lines) == 1
