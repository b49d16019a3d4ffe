"""A real Prometheus (Debian's ``prometheus`` package) as a stack component, scraping the gateway.

Started like the emulators: the leader of its own process group, on a free port, with its own
TSDB folder (``<state>/prometheus/data``, emptied on every start: the stack's other state is fresh
too, and a revision name is deterministic, so old samples would look like a counter reset) and a
generated configuration that scrapes the gateway's ``/metrics`` every second. Healthy = a process
of our group listens on the port and ``GET /-/ready`` answers 200.

Prometheus does not wait for the cluster: it starts in parallel with it and finds the gateway
through a file of scrape targets (``file_sd_configs``), which ``write_scrape_targets`` (a setup
step after the cluster is up) fills in. Prometheus hands discovered targets to its scrapers on a
fixed 5-second tick (static targets too; no flag changes it in 2.42), so the first scrape of the
gateway comes 5-6 s after Prometheus started, wherever its start is placed; nothing is lost meanwhile, because the gateway's counters are cumulative from 0
(see ``shared.metrics.observers``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from local.components import (
    Component,
    MissingComponent,
    RunningComponent,
    StackContext,
    http_server_component,
    start_component,
)

NAME = "prometheus"
PACKAGE = "prometheus"
EXPORT_KEY = "prometheus_url"
SCRAPE_INTERVAL = "1s"
SCRAPE_JOB = "gateway"


def find_prometheus() -> Path:
    """The ``prometheus`` binary on PATH; raises MissingComponent naming the Debian package."""
    found = shutil.which("prometheus")
    if found is None:
        raise MissingComponent(
            "Prometheus",
            "no `prometheus` on PATH",
            f"Install the Debian package {PACKAGE} (apt-get install {PACKAGE}).",
        )
    return Path(found)


def prometheus_dir(state_dir: Path) -> Path:
    """``<state>/prometheus``: config, scrape targets and the TSDB."""
    return state_dir / "prometheus"


def targets_file(state_dir: Path) -> Path:
    """The file_sd targets file Prometheus watches."""
    return prometheus_dir(state_dir) / "targets.json"


def config(targets: Path, scrape_interval: str = SCRAPE_INTERVAL) -> dict[str, object]:
    """The Prometheus configuration: one job scraping ``/metrics`` of the targets in ``targets``."""
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB,
                "metrics_path": "/metrics",
                "scrape_interval": scrape_interval,
                "file_sd_configs": [{"files": [str(targets)]}],
            }
        ],
    }


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text)
    partial.replace(path)  # Prometheus never reads half a file


def write_targets(state_dir: Path, urls: list[str]) -> None:
    """Point the scrape job at ``urls`` (``http://host:port``; Prometheus picks the file up)."""
    hosts = [urllib.parse.urlsplit(url).netloc for url in urls]
    groups = [{"targets": hosts, "labels": {}}] if hosts else []
    _write_atomically(targets_file(state_dir), json.dumps(groups) + "\n")


def _prepare(state_dir: Path) -> Path:
    """A fresh folder: empty TSDB, no targets yet, the config; returns the config file."""
    folder = prometheus_dir(state_dir)
    shutil.rmtree(folder / "data", ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    write_targets(state_dir, [])
    config_file = folder / "prometheus.yml"  # JSON is YAML
    _write_atomically(config_file, json.dumps(config(targets_file(state_dir)), indent=2) + "\n")
    return config_file


def prometheus_component(*, timeout: float = 30.0) -> Component:
    """Prometheus on a free loopback port, TSDB and config under ``<state>/prometheus``."""

    def command(port: int, ctx: StackContext) -> list[str]:
        config_file = _prepare(ctx.state_dir)
        return [
            str(find_prometheus()),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={prometheus_dir(ctx.state_dir) / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{port}",
        ]

    component = http_server_component(
        NAME,
        command,
        health_path="/-/ready",
        accept=lambda status, _body: status == 200,
        exports=lambda url: {EXPORT_KEY: url},
        timeout=timeout,
    )
    return dataclasses.replace(component, check=_check)


def _check() -> None:
    find_prometheus()


def write_scrape_targets(ctx: StackContext) -> Mapping[str, str]:
    """Setup step: once the cluster is up, tell Prometheus to scrape its gateway."""
    if NAME in ctx.urls and "gateway_url" in ctx.exports:
        write_targets(ctx.state_dir, [ctx.exports["gateway_url"]])
    return {}


def start_prometheus(state_dir: Path, log_path: Path, *, timeout: float = 30.0) -> RunningComponent:
    """Start Prometheus on its own (test fixtures); scrape with ``write_targets``; ``.process.stop()``."""
    find_prometheus()
    ctx = StackContext(project="-", domain="example.com", state_dir=state_dir, repo_root=Path.cwd())
    return start_component(prometheus_component(timeout=timeout), ctx, log_path)
