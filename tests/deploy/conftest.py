"""Shared deploy.sh runs against the recording fakes (one of each kind per session)."""

from __future__ import annotations

import pytest

from tests.deploy.cli_runs import Run, run_deploy


@pytest.fixture(scope="session")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A run against an empty project."""
    run = run_deploy(tmp_path_factory.mktemp("fresh"))
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="session")
def again(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A run against a project where everything exists already."""
    run = run_deploy(tmp_path_factory.mktemp("again"), existing=True)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="session")
def dry(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A --dry-run."""
    run = run_deploy(tmp_path_factory.mktemp("dry"), "--dry-run")
    assert run.returncode == 0, run.stderr
    return run
