"""A recording stand-in for `gcloud` and `kubectl`: logs each argv and answers as the test configured.

Environment:
  FAKE_CLI_LOG       JSON-lines file; one {"tool", "argv", "files"} record per call (files: the
                     contents of `-f FILE` arguments, so applied manifests can be checked).
  FAKE_CLI_EXISTING  "1": every describe/get succeeds (everything exists); else they fail NOT_FOUND.
  FAKE_CLI_ANSWERS   JSON file: a list of {"when": [token, ...], "stdout": str, "rc": int}; the first
                     rule whose tokens all appear in argv answers. "{name}" in stdout becomes the
                     argument after the first verb (describe, create, deploy, ...).
  FAKE_CLI_FAIL      space-separated tokens: a call holding all of them fails with PERMISSION_DENIED.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

_VERBS = ("describe", "create", "deploy", "get", "update", "list", "apply")


def _name(argv: list[str]) -> str:
    for index, token in enumerate(argv[:-1]):
        if token in _VERBS:
            return argv[index + 1]
    return ""


def _files(argv: list[str]) -> dict[str, str]:
    files = {}
    for flag, value in itertools.pairwise(argv):
        if flag == "-f" and Path(value).is_file():
            files[value] = Path(value).read_text()
    return files


def main(tool: str, argv: list[str]) -> int:
    """Record the call, then answer it."""
    with open(os.environ["FAKE_CLI_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"tool": tool, "argv": argv, "files": _files(argv)}) + "\n")
    fail = os.environ.get("FAKE_CLI_FAIL", "").split()
    if fail and all(token in argv for token in fail):
        print(
            f"ERROR: ({tool}) PERMISSION_DENIED: the fake refuses {' '.join(fail)}", file=sys.stderr
        )
        return 1
    answers = os.environ.get("FAKE_CLI_ANSWERS")
    for rule in json.loads(Path(answers).read_text()) if answers else []:
        if all(token in argv for token in rule["when"]):
            sys.stdout.write(rule.get("stdout", "").replace("{name}", _name(argv)))
            return int(rule.get("rc", 0))
    if "describe" in argv or "get" in argv:
        if os.environ.get("FAKE_CLI_EXISTING") == "1":
            return 0
        print(f"ERROR: ({tool}) NOT_FOUND: {_name(argv)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).name, sys.argv[2:]))
