"""Child processes in their own process groups: start, identify, watch and stop whole groups.

Linux only (reads ``/proc``). Every process we start leads a new session, so its process group
holds it and everything it spawns (the Firestore emulator's shell wrapper runs Java as a child;
killing only the wrapper would leave Java holding the port). Identity is checked by start time,
so a recorded pid that the kernel has since given to someone else is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC = Path("/proc")
_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` we use."""

    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    start_ticks: int  # clock ticks after boot; with the pid, identifies one process for good


def read_stat(pid: int) -> ProcStat | None:
    """Parse ``/proc/<pid>/stat``; None if the process does not exist (any more)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces and parentheses.
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(
        pid=pid,
        state=fields[0],
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        sid=int(fields[3]),
        start_ticks=int(fields[19]),
    )


def _all_pids() -> Iterable[int]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def group_members(pgid: int) -> list[ProcStat]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for pid in _all_pids():
        stat = read_stat(pid)
        # A zombie holds no resources; it is gone as far as "is anything left running" goes.
        if stat is not None and stat.pgid == pgid and stat.state != "Z":
            members.append(stat)
    return members


def is_running(pid: int, start_ticks: int) -> bool:
    """True if ``pid`` is alive and is the same process that started at ``start_ticks``."""
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z" and stat.start_ticks == start_ticks


def cmdline(pid: int) -> list[str]:
    """The argv of a running process (empty if gone or unreadable)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes (other than this one) whose initial environment has ``name=value``.

    Children inherit the environment, so a unique marker variable finds every descendant of
    whoever set it, even ones re-parented after their parent died.
    """
    marker = f"{name}={value}".encode()
    found = []
    for pid in _all_pids():
        if pid == os.getpid():
            continue
        try:
            environ = (PROC / str(pid) / "environ").read_bytes()
        except OSError:
            continue
        stat = read_stat(pid)
        if stat is not None and stat.state != "Z" and marker in environ.split(b"\0"):
            found.append(pid)
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of one process in bytes (0 if gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def group_rss_bytes(pgid: int) -> int:
    """Sum of the resident set sizes of every live process in the group."""
    return sum(rss_bytes(member.pid) for member in group_members(pgid))


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` on any local address (IPv4 and IPv6)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            cols = line.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            if local_port == port and cols[3] == "0A":  # 0A = TCP_LISTEN
                inodes.add(cols[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    fd_dir = PROC / str(pid) / "fd"
    inodes = set()
    try:
        fds = list(fd_dir.iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return set()
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def group_listens_on(pgid: int, port: int) -> bool:
    """True if a process of group ``pgid`` holds the listening socket of TCP ``port``.

    This is what tells our own emulator apart from a stranger that already had the port:
    both may answer HTTP, only ours owns the socket.
    """
    listening = _listening_inodes(port)
    if not listening:
        return False
    return any(listening & _socket_inodes(member.pid) for member in group_members(pgid))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


@dataclass(frozen=True)
class StopResult:
    """How a group stop went."""

    was_running: bool
    clean: bool  # every process left after SIGTERM, without needing SIGKILL
    gone: bool  # nothing of the group is left


def stop_group(pgid: int, *, term_timeout: float = 5.0, kill_timeout: float = 3.0) -> StopResult:
    """SIGTERM the whole group, wait up to ``term_timeout``, then SIGKILL the rest.

    The caller must already know ``pgid`` is ours (see ``GroupRecord.owned_pgid``).
    """
    if not group_members(pgid):
        return StopResult(was_running=False, clean=True, gone=True)
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group_gone(pgid, term_timeout):
        return StopResult(was_running=True, clean=True, gone=True)
    _signal_group(pgid, signal.SIGKILL)
    return StopResult(was_running=True, clean=False, gone=_wait_group_gone(pgid, kill_timeout))


@dataclass(frozen=True)
class GroupRecord:
    """What we persist about a process group we started, enough to stop it from another process.

    ``members`` maps pid -> start ticks of the group's processes when last snapshotted; the
    leader is always included.
    """

    pid: int
    pgid: int
    start_ticks: int
    argv: tuple[str, ...]
    members: Mapping[int, int] = field(default_factory=dict)

    def owned_pgid(self) -> int | None:
        """The pgid if the group still exists and is provably ours, else None.

        A pgid cannot be reused while any process is in the group, so finding one recorded
        member alive (same pid, same start time) in that group proves the group is ours.
        """
        known = {self.pid: self.start_ticks, **self.members}
        for pid, ticks in known.items():
            stat = read_stat(pid)
            if (
                stat is not None
                and stat.state != "Z"
                and stat.start_ticks == ticks
                and stat.pgid == self.pgid
            ):
                return self.pgid
        return None

    def leader_running(self) -> bool:
        """True while the process we started (the group leader) is alive and still itself."""
        return is_running(self.pid, self.start_ticks)

    def stop(self, *, term_timeout: float = 5.0, kill_timeout: float = 3.0) -> StopResult:
        """Stop the group if it is still ours; a no-op for a group that is gone or reused."""
        pgid = self.owned_pgid()
        if pgid is None:
            return StopResult(was_running=False, clean=True, gone=True)
        return stop_group(pgid, term_timeout=term_timeout, kill_timeout=kill_timeout)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form (pids as string keys, as JSON requires)."""
        return {
            "pid": self.pid,
            "pgid": self.pgid,
            "start_ticks": self.start_ticks,
            "argv": list(self.argv),
            "members": {str(pid): ticks for pid, ticks in self.members.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupRecord:
        """Inverse of ``to_json``; raises KeyError/ValueError/TypeError on a malformed record."""
        return cls(
            pid=int(data["pid"]),
            pgid=int(data["pgid"]),
            start_ticks=int(data["start_ticks"]),
            argv=tuple(str(arg) for arg in data.get("argv", [])),
            members={int(pid): int(ticks) for pid, ticks in data.get("members", {}).items()},
        )


class ManagedProcess:
    """A child we started as the leader of its own process group, logging to a file."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        argv: Sequence[str],
        log_path: Path,
        log_offset: int = 0,
    ) -> None:
        self._popen = popen
        self.argv = tuple(argv)
        self.log_path = log_path
        self.log_offset = log_offset  # where this process's output starts in a shared log
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session=True: the child leads its own group
        stat = read_stat(self.pid)
        # The child cannot be reaped before we wait() on it, so its stat is readable here.
        self.start_ticks = stat.start_ticks if stat is not None else 0

    def recent_output(self, max_bytes: int = 64 * 1024) -> str:
        """The end of what this process (not an earlier one in the same log) has written."""
        try:
            with open(self.log_path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(self.log_offset, size - max_bytes))
                return handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        """True while the leader process has not exited."""
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """The leader's exit status once it has exited (negative: killed by that signal)."""
        return self._popen.poll()

    def record(self) -> GroupRecord:
        """Snapshot of the group for persisting (members as of now)."""
        members = {m.pid: m.start_ticks for m in group_members(self.pgid)}
        members.setdefault(self.pid, self.start_ticks)
        return GroupRecord(
            pid=self.pid,
            pgid=self.pgid,
            start_ticks=self.start_ticks,
            argv=self.argv,
            members=members,
        )

    def stop(self, *, term_timeout: float = 5.0, kill_timeout: float = 3.0) -> StopResult:
        """Stop the whole group and reap the leader."""
        result = stop_group(self.pgid, term_timeout=term_timeout, kill_timeout=kill_timeout)
        try:
            self._popen.wait(timeout=kill_timeout)
        except subprocess.TimeoutExpired:
            # Leader stuck in uninterruptible sleep even after SIGKILL: report, do not hang.
            return StopResult(was_running=result.was_running, clean=False, gone=False)
        return result


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    append_log: bool = False,
) -> ManagedProcess:
    """Start ``argv`` as the leader of a new session/process group, output to ``log_path``.

    ``env`` replaces the environment entirely when given. stdin is /dev/null so a detached
    stack never competes with the terminal.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab" if append_log else "wb") as log:
        log.write(f"=== hekaton: {' '.join(argv)}\n".encode())
        log.flush()
        offset = log.tell()
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    return ManagedProcess(popen, argv, log_path, offset)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' if missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
