"""Prometheus as a stack component: its generated config, fresh TSDB, bind failures, a missing binary."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from local import stack, stack_state
from local.components import MissingComponent, PortConflict, StackContext
from local.procs import spawn
from local.prometheus_component import (
    find_prometheus,
    prometheus_component,
    start_prometheus,
    targets_file,
    write_scrape_targets,
)


def _require_prometheus() -> Path:
    try:
        return find_prometheus()
    except MissingComponent as exc:
        pytest.skip(str(exc))


def test_a_missing_binary_names_the_package_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(MissingComponent) as caught:
        find_prometheus()
    assert "Install the Debian package prometheus (apt-get install prometheus)" in str(caught.value)
    options = stack.StackOptions(state_dir=tmp_path / "state")
    with pytest.raises(MissingComponent, match="apt-get install prometheus"):
        stack.up(options, plan=[stack.ComponentGroup((prometheus_component(),))])
    assert not (options.state_dir / "logs").exists()
    assert stack_state.load_state(options.state_dir) is None


def test_it_starts_with_a_fresh_tsdb_and_a_valid_config_scraping_every_second(
    tmp_path: Path,
) -> None:
    binary = _require_prometheus()
    stale = tmp_path / "prometheus" / "data" / "stale-block"
    stale.mkdir(parents=True)
    running = start_prometheus(tmp_path, tmp_path / "prometheus.log")
    try:
        assert running.ready.exports == {"prometheus_url": running.ready.url}
        assert not stale.exists()  # samples of an earlier stack would look like counter resets
        config_file = tmp_path / "prometheus" / "prometheus.yml"
        config = json.loads(config_file.read_text())
        assert config["global"]["scrape_interval"] == "1s"
        (job,) = config["scrape_configs"]
        assert job["job_name"] == "gateway" and job["metrics_path"] == "/metrics"
        assert job["file_sd_configs"] == [{"files": [str(targets_file(tmp_path))]}]
        assert json.loads(targets_file(tmp_path).read_text()) == []
        promtool = shutil.which("promtool", path=str(binary.parent))
        if promtool:  # Prometheus's own checker agrees
            check = subprocess.run(
                [promtool, "check", "config", str(config_file)], capture_output=True, text=True
            )
            assert check.returncode == 0, check.stdout + check.stderr

        ctx = StackContext("p", "example.com", tmp_path, tmp_path)
        write_scrape_targets(ctx)  # no prometheus in this context: nothing to tell
        assert json.loads(targets_file(tmp_path).read_text()) == []
        ctx = StackContext(
            "p",
            "example.com",
            tmp_path,
            tmp_path,
            exports={"gateway_url": "http://127.0.0.1:4321"},
            urls={"prometheus": running.ready.url},
        )
        write_scrape_targets(ctx)
        assert json.loads(targets_file(tmp_path).read_text()) == [
            {"targets": ["127.0.0.1:4321"], "labels": {}}
        ]
    finally:
        running.process.stop()


def test_a_taken_port_is_a_port_conflict_so_the_stack_retries_elsewhere(tmp_path: Path) -> None:
    _require_prometheus()
    component = prometheus_component()
    launch = component.launch(StackContext("p", "example.com", tmp_path, tmp_path))
    assert launch.port is not None
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", launch.port))
        squatter.listen()
        process = spawn(launch.argv, log_path=tmp_path / "prometheus.log", env=launch.env)
        try:
            deadline = time.monotonic() + 20
            while process.alive():
                assert time.monotonic() < deadline, "prometheus kept running on a taken port"
                time.sleep(0.05)
            with pytest.raises(PortConflict):
                component.probe(launch, process)
        finally:
            process.stop()
