"""Keep a function process running through injected crashes, and count them.

``python -m local.faults.supervisor --counts FILE -- python -m functions_framework …``. The child's
output is copied to ours line by line (the component's log); lines saying an injected crash
happened (shared/crashpoints.py) are counted by crash point. functions-framework serves through
gunicorn, whose arbiter respawns a crashed worker itself (as Cloud Run replaces a crashed
instance): those respawns are counted as restarts. Should the whole process end with the crash
exit code, it is started again here (counted too); any other exit ends the supervisor with the
child's code, so the stack sees a real failure.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from local.faults.counts import FaultCounts
from shared.crashpoints import CRASH_EXIT_CODE, POINTS

# By name: two workers' lines can meet in the pipe with no newline between them ("after_kubehekaton").
_INJECTED = re.compile(rf"hekaton: injected crash at ({'|'.join(POINTS)})")
_RESPAWNED = re.compile(rf"Worker \(pid:\d+\) exited with code {CRASH_EXIT_CODE}")


def count_line(line: str, counts: FaultCounts) -> None:
    """Count what one line of the child's output reports."""
    for injected in _INJECTED.finditer(line):
        counts.add(injected.group(1))  # the crash point
    if _RESPAWNED.search(line):
        counts.add("worker_restarts")


def _copy(stream: IO[str], counts: FaultCounts) -> None:
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        count_line(line, counts)


def supervise(argv: list[str], counts: FaultCounts) -> int:
    """Run `argv` until it exits with something other than the crash code; returns that code."""
    child: subprocess.Popen[str] | None = None

    def forward(signum: int, frame: object) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        child = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert child.stdout is not None
        copier = threading.Thread(target=_copy, args=(child.stdout, counts), daemon=True)
        copier.start()
        code = child.wait()
        copier.join(5)
        if code != CRASH_EXIT_CODE:
            return code
        counts.add("process_restarts")


def main(argv: list[str] | None = None) -> int:
    """Parse `--counts FILE -- COMMAND…` and supervise."""
    parser = argparse.ArgumentParser(prog="python -m local.faults.supervisor", description=__doc__)
    parser.add_argument("--counts", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to supervise after --")
    return supervise(command, FaultCounts(args.counts))


if __name__ == "__main__":
    raise SystemExit(main())
