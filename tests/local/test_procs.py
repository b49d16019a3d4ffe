"""Process groups: start in a new group, identify by start time, stop the whole group."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from local.procs import (
    GroupRecord,
    ManagedProcess,
    ProcStat,
    cmdline,
    group_listens_on,
    group_members,
    group_rss_bytes,
    is_running,
    processes_with_env,
    read_stat,
    spawn,
    stop_group,
    tail,
)

T = TypeVar("T")

# Ignores SIGTERM (after saying so), so only the SIGKILL escalation can stop it.
STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ignoring SIGTERM', flush=True)\n"
    "time.sleep(60)\n"
)


def members_when(pgid: int, count: int) -> list[ProcStat] | None:
    """The group's members once there are ``count`` of them, else None."""
    members = group_members(pgid)
    return members if len(members) == count else None


def eventually(
    condition: Callable[[], T | None], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ManagedProcess]]:
    """Processes a test starts; any still running afterwards are stopped."""
    processes: list[ManagedProcess] = []
    yield processes
    for process in processes:
        process.stop(term_timeout=1.0)


def test_child_leads_its_own_group_and_stop_takes_the_whole_group(
    tmp_path: Path, started: list[ManagedProcess]
) -> None:
    process = spawn(["sh", "-c", "sleep 30 & sleep 30 & wait"], log_path=tmp_path / "g.log")
    started.append(process)

    assert process.pgid == process.pid != os.getpgid(0)
    assert read_stat(process.pid).sid == process.pid  # type: ignore[union-attr]
    members = eventually(lambda: members_when(process.pgid, 3), what="the children")
    result = process.stop()

    assert result.was_running and result.clean and result.gone
    assert not any(is_running(m.pid, m.start_ticks) for m in members)
    assert not process.alive()


def test_a_group_that_ignores_sigterm_is_killed_after_the_deadline(
    tmp_path: Path, started: list[ManagedProcess]
) -> None:
    log = tmp_path / "stubborn.log"
    process = spawn([sys.executable, "-c", STUBBORN], log_path=log)
    started.append(process)
    eventually(lambda: "ignoring SIGTERM" in tail(log).splitlines(), what="the handler")

    began = time.monotonic()
    result = process.stop(term_timeout=0.3)

    assert result.was_running and not result.clean and result.gone
    assert time.monotonic() - began < 3.0
    assert process.returncode == -signal.SIGKILL


def test_stop_group_of_a_vanished_group_is_a_no_op(tmp_path: Path) -> None:
    process = spawn(["true"], log_path=tmp_path / "t.log")
    eventually(lambda: not process.alive(), what="exit")
    result = stop_group(process.pgid)
    assert not result.was_running and result.gone


def test_exit_code_and_log_of_a_failed_child(tmp_path: Path) -> None:
    log = tmp_path / "fail.log"
    process = spawn(["sh", "-c", "echo first; echo 'it broke' >&2; exit 3"], log_path=log)
    eventually(lambda: not process.alive(), what="exit")
    assert process.returncode == 3
    assert tail(log, 2).splitlines() == ["first", "it broke"]
    assert tail(tmp_path / "missing.log") == ""


def test_environment_and_working_directory_are_the_ones_given(tmp_path: Path) -> None:
    log = tmp_path / "env.log"
    process = spawn(
        ["sh", "-c", 'echo "$GREETING from $(pwd)"'],
        log_path=log,
        env={"GREETING": "hello", "PATH": os.environ["PATH"]},
        cwd=tmp_path,
    )
    eventually(lambda: not process.alive(), what="exit")
    assert tail(log, 1) == f"hello from {tmp_path}"


def test_stat_parsing_survives_spaces_and_parentheses_in_the_command_name(
    tmp_path: Path, started: list[ManagedProcess]
) -> None:
    odd = tmp_path / "a) (b c"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", odd)
    process = spawn([str(odd), "30"], log_path=tmp_path / "odd.log")
    started.append(process)
    # Popen returns once exec has closed its pipe, which the kernel does after naming the process
    # but before it sets up the new argv: /proc/PID/cmdline can be empty for a moment.
    eventually(lambda: cmdline(process.pid) == [str(odd), "30"], what="the exec'd argv")
    stat = read_stat(process.pid)
    assert stat is not None
    assert (stat.pid, stat.pgid, stat.ppid) == (process.pid, process.pid, os.getpid())
    assert stat.start_ticks == process.start_ticks > 0


def test_a_recorded_pid_now_held_by_another_process_is_never_signalled(
    tmp_path: Path, started: list[ManagedProcess]
) -> None:
    stranger = spawn(["sleep", "30"], log_path=tmp_path / "stranger.log")
    started.append(stranger)
    # Same pid and group, different start time: what a reused pid looks like.
    stale = GroupRecord(
        pid=stranger.pid,
        pgid=stranger.pgid,
        start_ticks=stranger.start_ticks - 1,
        argv=("sleep", "30"),
    )

    assert stale.owned_pgid() is None
    assert not stale.leader_running()
    result = stale.stop(term_timeout=0.5)

    assert not result.was_running
    assert stranger.alive()


def test_record_round_trips_and_stops_the_group_from_another_handle(
    tmp_path: Path, started: list[ManagedProcess]
) -> None:
    process = spawn(["sh", "-c", "sleep 30 & wait"], log_path=tmp_path / "r.log")
    started.append(process)
    eventually(lambda: len(group_members(process.pgid)) == 2, what="the child")
    record = GroupRecord.from_json(process.record().to_json())

    assert record.leader_running()
    assert record.owned_pgid() == process.pgid
    assert set(record.members) == {m.pid for m in group_members(process.pgid)}
    assert record.stop().gone
    assert group_members(process.pgid) == []


def test_group_with_a_dead_leader_is_still_found_through_a_recorded_member(
    tmp_path: Path, started: list[ManagedProcess]
) -> None:
    process = spawn(["sh", "-c", "sleep 30 & wait"], log_path=tmp_path / "orphan.log")
    started.append(process)
    eventually(lambda: len(group_members(process.pgid)) == 2, what="the child")
    record = process.record()
    os.kill(process.pid, signal.SIGKILL)  # the wrapper dies, its child keeps the group alive
    eventually(lambda: not process.alive(), what="the leader to die")

    assert not record.leader_running()
    assert record.owned_pgid() == process.pgid
    assert record.stop().gone
    assert group_members(process.pgid) == []


def test_listening_socket_is_attributed_to_its_own_group_only(
    tmp_path: Path, started: list[ManagedProcess]
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        other = spawn(["sleep", "30"], log_path=tmp_path / "other.log")
        started.append(other)

        assert group_listens_on(os.getpgid(0), port)
        assert not group_listens_on(other.pgid, port)
    assert not group_listens_on(os.getpgid(0), port)  # closed


def test_processes_are_found_by_an_inherited_environment_marker(
    tmp_path: Path, started: list[ManagedProcess]
) -> None:
    marker = f"m{os.getpid()}{time.monotonic_ns()}"
    env = {**os.environ, "HEKATON_PROCS_TEST": marker}
    process = spawn(["sh", "-c", "sleep 30 & wait"], log_path=tmp_path / "m.log", env=env)
    started.append(process)
    members = eventually(lambda: members_when(process.pgid, 2), what="the children")
    pids = sorted(m.pid for m in members)
    # A child caught inside exec shows an empty environment for a moment (see the test above).
    eventually(
        lambda: sorted(processes_with_env("HEKATON_PROCS_TEST", marker)) == pids,
        what="every member found by its marker",
    )
    assert group_rss_bytes(process.pgid) > 0
    process.stop()
    assert processes_with_env("HEKATON_PROCS_TEST", marker) == []


def test_recent_output_is_only_what_this_process_wrote_to_a_shared_log(tmp_path: Path) -> None:
    log = tmp_path / "shared.log"
    first = spawn(["echo", "first attempt failed"], log_path=log)
    eventually(lambda: not first.alive(), what="the first process to exit")
    second = spawn(["echo", "second attempt"], log_path=log, append_log=True)
    eventually(lambda: not second.alive(), what="the second process to exit")

    assert "first attempt failed" in first.recent_output()
    assert second.recent_output() == "second attempt\n"
    assert "first attempt failed" in log.read_text()  # the log keeps both
