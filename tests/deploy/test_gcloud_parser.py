"""Every gcloud command deploy.sh runs, judged by the real gcloud's argument parser (offline).

With an empty CLOUDSDK_CONFIG and prompts disabled, gcloud parses a command fully before it needs
credentials: valid arguments fail on the missing account, a bad flag or value fails on parsing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.deploy.cli_runs import Run

_VERBS = {
    "describe",
    "create",
    "list",
    "update",
    "deploy",
    "enable",
    "add-iam-policy-binding",
    "add-invoker-policy-binding",
    "get-value",
    "get-credentials",
}
NO_ACCOUNT = "You do not currently have an active account selected"


def _shape(argv: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The command path (up to its verb) and the flags it uses: one real check per shape."""
    path = []
    for token in argv:
        path.append(token)
        if token in _VERBS:
            break
    flags = sorted({t.split("=")[0] for t in argv if t.startswith("--")})
    # A value the parser checks (a memory size, a scheduler sub-kind) differs between functions.
    typed = [argv[argv.index(f) + 1] for f in ("--memory", "--cpu") if f in argv]
    return tuple(path + typed), tuple(flags)


def _judge(gcloud: str, argv: list[str]) -> tuple[list[str], int, str]:
    with tempfile.TemporaryDirectory() as config:
        env = {
            **os.environ,
            "CLOUDSDK_CONFIG": config,
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
        }
        env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        result = subprocess.run(
            [gcloud, *argv], capture_output=True, text=True, env=env, timeout=120, check=False
        )
    return argv, result.returncode, result.stderr


@pytest.mark.slow
def test_every_gcloud_command_parses(fresh: Run, again: Run) -> None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is missing: install the google-cloud-cli package to check deploy.sh")
    commands: dict[object, list[str]] = {}
    for argv in fresh.argvs() + again.argvs():
        commands.setdefault(_shape(argv), argv)
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda argv: _judge(gcloud, argv), commands.values()))
    refused = [
        f"gcloud {' '.join(argv)}\n  -> {stderr.strip().splitlines()[0] if stderr.strip() else rc}"
        for argv, rc, stderr in verdicts
        if rc != 0 and NO_ACCOUNT not in stderr
    ]
    assert not refused, "the real gcloud refuses:\n" + "\n".join(refused)
    # The check can fail: the same parser refuses a flag deploy.sh does not use.
    _, rc, stderr = _judge(gcloud, ["pubsub", "topics", "create", "abc", "--dead-letter", "x"])
    assert rc != 0 and NO_ACCOUNT not in stderr and "unrecognized arguments" in stderr
