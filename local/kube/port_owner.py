"""Who listens on a loopback TCP port, read from Linux's /proc.

The local runtime gives each revision a free port and the process binds it a moment later; on a
machine shared with other stacks something else can take the port in between (a pod has its own
network namespace, so Knative never meets this). The runtime asks this module whether the server
answering on a revision's port is that revision's own process before calling it ready.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")
_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def listening_inodes(port: int, proc: Path = _PROC) -> set[int] | None:
    """Socket inodes listening on `port` (IPv4 or IPv6), or None where /proc/net is unreadable."""
    found: set[int] = set()
    readable = False
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(int(fields[9]))
    return found if readable else None


def process_tree(pid: int, proc: Path = _PROC) -> set[int]:
    """`pid` and every process descended from it (from each process's parent in /proc/N/stat)."""
    parents: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents[int(entry.name)] = int(fields[1])
    tree = {pid}
    grew = True
    while grew:
        children = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def socket_inodes(pid: int, proc: Path = _PROC) -> set[int]:
    """The socket inodes among a process's open files (empty if it is gone or not ours to read)."""
    inodes: set[int] = set()
    fd_dir = proc / str(pid) / "fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def port_owned_by(port: int, pid: int, proc: Path = _PROC) -> bool | None:
    """Whether `pid` or a descendant holds a socket listening on `port`.

    None when /proc cannot tell (no /proc/net, or nobody listens at all yet).
    """
    listening = listening_inodes(port, proc)
    if not listening:
        return None
    return any(listening & socket_inodes(member, proc) for member in process_tree(pid, proc))
