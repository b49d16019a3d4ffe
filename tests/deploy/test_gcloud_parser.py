"""Every gcloud command deploy.sh runs, judged by the real gcloud's argument parser (offline).

With an empty CLOUDSDK_CONFIG and prompts disabled, gcloud parses a command fully before it needs
credentials: valid arguments fail on the missing account, a bad flag or value fails on parsing.
The SDK's CLI is loaded once (tests/deploy/gcloud_judge.py) and runs each command in turn.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.cli_runs import Run

JUDGE = Path(__file__).resolve().parent / "gcloud_judge.py"
NO_ACCOUNT = "You do not currently have an active account selected"
_MARKER = re.compile(r"^@@@ (\d+)$", re.MULTILINE)


def _sdk() -> tuple[Path, str]:
    """The SDK root and the Python the gcloud wrapper runs (skip where gcloud is missing)."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is missing: install the google-cloud-cli package to check deploy.sh")
    root = Path(os.path.realpath(gcloud)).parents[1]
    bundled = root / "platform" / "bundledpythonunix" / "bin" / "python3"
    python = os.environ.get("CLOUDSDK_PYTHON") or (str(bundled) if bundled.exists() else "python3")
    return root, python


def judge(commands: list[list[str]], config: Path) -> list[tuple[list[str], int, str]]:
    """(argv, exit code, gcloud's messages) for each command, offline and without credentials."""
    root, python = _sdk()
    env = {
        **os.environ,
        "CLOUDSDK_ROOT_DIR": str(root),
        "CLOUDSDK_CONFIG": str(config),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
    }
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    result = subprocess.run(
        [python, str(JUDGE)],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        env=env,
        timeout=540,
        check=False,
    )
    codes = {r["index"]: r["code"] for r in map(json.loads, result.stdout.splitlines())}
    assert len(codes) == len(commands), result.stderr[-2000:]
    pieces = _MARKER.split(result.stderr)  # ["", "0", text0, "1", text1, ...]
    messages = {int(index): text for index, text in zip(pieces[1::2], pieces[2::2], strict=True)}
    return [(argv, codes[i], messages.get(i, "")) for i, argv in enumerate(commands)]


@pytest.mark.slow
def test_every_gcloud_command_parses(fresh: Run, again: Run, tmp_path: Path) -> None:
    commands = list({tuple(a): a for a in fresh.argvs() + again.argvs()}.values())
    # The judge can fail: one flag deploy.sh does not use must be refused by the parser.
    bogus = ["pubsub", "topics", "create", "abcd", "--dead-letter", "x"]
    verdicts = judge([*commands, bogus], tmp_path / "gcloud-config")
    *checked, (_, bogus_code, bogus_message) = verdicts
    assert bogus_code == 2 and "unrecognized arguments" in bogus_message
    refused = [
        f"gcloud {' '.join(argv)}\n  -> {message.strip()[:300]}"
        for argv, code, message in checked
        if code != 0 and NO_ACCOUNT not in message
    ]
    assert not refused, "the real gcloud refuses:\n" + "\n".join(refused)
    assert len(checked) == len(commands) > 100
