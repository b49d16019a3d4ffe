"""Running deploy.sh against the recording fakes, and reading what they recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FAKE_BIN = Path(__file__).resolve().parent / "bin"
PROJECT, REGION, CLUSTER, LOCATION = "demo-proj", "europe-west1", "models-gke", "europe-west1-b"
NAMESPACES = ("models", "team-b")
ARGS = [
    "gcp",
    "--project",
    PROJECT,
    "--region",
    REGION,
    "--cluster",
    CLUSTER,
    "--cluster-location",
    LOCATION,
    "--namespaces",
    ",".join(NAMESPACES),
    "--invokers",
    "group:ops@example.com",
]
PROJECT_NUMBER = "123456789012"


@dataclass
class Run:
    """One deploy.sh run: exit status, output, and every fake call in order."""

    returncode: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]] = field(default_factory=list)

    def argvs(self, tool: str = "gcloud") -> list[list[str]]:
        """The argv of every call to `tool`."""
        return [c["argv"] for c in self.calls if c["tool"] == tool]


def answers(project: str, existing: bool) -> list[dict[str, Any]]:
    """What the fake gcloud and kubectl answer besides describe/get (as a real project would)."""
    indexes = json.loads((REPO / "firestore.indexes.json").read_text())["indexes"]
    listed = [
        {**index, "fields": [*index["fields"], {"fieldPath": "__name__", "order": "DESCENDING"}]}
        for index in indexes
    ]
    outcome = "unchanged" if existing else "created"
    return [
        {"when": ["config", "get-value", "account"], "stdout": "deployer@example.com\n"},
        {"when": ["projects", "describe"], "stdout": PROJECT_NUMBER + "\n"},
        {"when": ["clusters", "describe", "value(endpoint)"], "stdout": "203.0.113.10\n"},
        {"when": ["clusters", "describe"], "stdout": "Q0EtZGF0YQ==\n"},
        {"when": ["secrets", "describe"], "rc": 0},
        {"when": ["functions", "describe"], "stdout": "{name}\n"},
        {
            "when": ["eventarc", "triggers", "describe"],
            "stdout": f"projects/{project}/subscriptions/eventarc-{REGION}-{{name}}-sub\n",
        },
        {
            "when": ["indexes", "composite", "list"],
            "stdout": json.dumps(listed if existing else []),
        },
        {
            "when": ["ttls", "list"],
            "stdout": (
                f"projects/{project}/databases/(default)/collectionGroups/ignored/fields/expires_at\n"
                if existing
                else ""
            ),
        },
        {
            "when": ["apply", "-f"],
            "stdout": f"role.rbac.authorization.k8s.io/hekaton {outcome}\n"
            f"rolebinding.rbac.authorization.k8s.io/hekaton {outcome}\n",
        },
    ]


def run_deploy(
    tmp: Path,
    *extra: str,
    existing: bool = False,
    fail: str = "",
    rules: list[dict[str, Any]] | None = None,
) -> Run:
    """Run ./deploy.sh with the fakes first on PATH; `extra` are more arguments (e.g. --dry-run)."""
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "calls.jsonl"
    log.write_text("")
    answers_file = tmp / "answers.json"
    answers_file.write_text(json.dumps(rules if rules is not None else answers(PROJECT, existing)))
    env = {
        **os.environ,
        "PATH": f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}",
        "FAKE_CLI_LOG": str(log),
        "FAKE_CLI_ANSWERS": str(answers_file),
        "FAKE_CLI_EXISTING": "1" if existing else "0",
        "FAKE_CLI_FAIL": fail,
        "FAKE_CLI_PYTHON": sys.executable,
    }
    result = subprocess.run(
        [str(REPO / "deploy.sh"), *ARGS, "--log-dir", str(tmp / "logs"), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines() if line]
    return Run(result.returncode, result.stdout, result.stderr, calls)
