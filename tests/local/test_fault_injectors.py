"""The fault injectors' decisions: seeded, at their configured rates, and applied as documented."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local.faults.counts import Dice, FaultCounts, totals_by_kind
from local.faults.delivery import DeliveryProxy, plan_delivery
from local.faults.kube import KubeFaultInjector
from local.faults.spec import (
    DeliveryFaults,
    FaultSpecError,
    FirestoreFaults,
    KubeFaults,
    all_faults,
    load_spec,
    parse_spec,
)
from local.faults.supervisor import count_line
from local.faults.tcp_outage import window_at


def test_a_spec_file_is_read_and_a_bad_field_is_named(tmp_path: Path) -> None:
    good = tmp_path / "faults.yaml"
    good.write_text("faults:\n  seed: 3\n  delivery: {duplicate: 0.5}\n  kube: {error: 0.1}\n")
    spec = load_spec(str(good))
    assert spec.seed == 3 and spec.kinds() == ["delivery", "kube"]
    assert spec.delivery is not None and spec.delivery.duplicate == 0.5
    assert load_spec(str(good), seed=9).seed == 9
    with pytest.raises(FaultSpecError, match=r"faults\.delivery\.duplicate: .*less than or equal"):
        parse_spec({"faults": {"delivery": {"duplicate": 2}}})
    with pytest.raises(FaultSpecError, match=r"faults\.kube\.eror: Extra inputs"):
        parse_spec({"faults": {"kube": {"eror": 0.1}}})
    with pytest.raises(FaultSpecError, match="cannot read fault spec"):
        load_spec(str(tmp_path / "missing.yaml"))
    assert all_faults().kinds() == ["delivery", "crash", "kube", "firestore"]


def test_the_documented_spec_file_is_exactly_what_faults_all_injects() -> None:
    documented = Path(__file__).resolve().parents[2] / "examples" / "faults.yaml"
    assert load_spec(str(documented)) == load_spec("all")
    assert load_spec(str(documented), seed=5) == load_spec("all", seed=5)


def test_delivery_plans_are_seeded_and_at_their_rates() -> None:
    faults = DeliveryFaults(duplicate=0.1, reorder=0.2, delay=0.3, fail=0.1)
    plans = [plan_delivery(Dice(5, "delivery"), faults) for _ in range(1)]
    first = [plan_delivery(d, faults) for d in [Dice(5, "delivery")] for _ in range(2000)]
    again = [plan_delivery(d, faults) for d in [Dice(5, "delivery")] for _ in range(2000)]
    assert first == again and plans[0] == first[0]
    rate = {k: sum(k in p.kinds() for p in first) / 2000 for k in ("delay", "reorder")}
    assert 0.25 <= rate["delay"] <= 0.35 and 0.16 <= rate["reorder"] <= 0.24
    failed = [p for p in first if p.fail_code is not None]
    assert 0.07 <= len(failed) / 2000 <= 0.13
    assert {p.fail_code for p in failed} == {500, 503}
    assert {p.fail_after_forward for p in failed} == {True, False}
    assert not any(p.duplicate for p in failed)  # a failed push is redelivered, not copied
    assert all(0.05 <= p.delay_seconds <= 1.0 for p in first if p.delay_seconds)
    none = [plan_delivery(Dice(5, "delivery"), DeliveryFaults()) for _ in range(100)]
    assert all(p.kinds() == [] for p in none)


def test_kube_plans_conflict_only_writes_and_drop_only_watches(tmp_path: Path) -> None:
    faults = KubeFaults(error=0.1, conflict=0.2, slow=0.1, drop_watch=0.5)
    injector = KubeFaultInjector(faults, Dice(1, "kube"), FaultCounts(tmp_path / "kube.json"))
    gets = [injector.plan("GET", watch=False) for _ in range(1000)]
    patches = [injector.plan("PATCH", watch=False) for _ in range(1000)]
    watches = [injector.plan("GET", watch=True) for _ in range(1000)]
    assert not any(p.conflict for p in gets) and not any(p.drop_watch for p in gets + patches)
    assert 0.14 <= sum(p.conflict for p in patches) / 1000 <= 0.24
    assert 0.07 <= sum(p.error_code is not None for p in gets) / 1000 <= 0.13
    assert 0.42 <= sum(p.drop_watch for p in watches) / 1000 <= 0.58
    assert all(p.error_code is None and not p.slow_seconds for p in watches)
    counts = json.loads((tmp_path / "kube.json").read_text())
    assert counts["conflict"] == sum(p.conflict for p in patches)
    assert counts["drop_watch"] == sum(p.drop_watch for p in watches)


def test_firestore_outage_windows_follow_the_schedule_and_alternate() -> None:
    faults = FirestoreFaults(every_seconds=10, down_seconds=2, first_after_seconds=5, mode="both")
    assert window_at(faults, 4.9) is None
    first = window_at(faults, 5.0)
    assert first is not None and (first.index, first.mode, first.ends_at) == (0, "refuse", 7.0)
    assert window_at(faults, 7.0) is None and window_at(faults, 14.9) is None
    second = window_at(faults, 16.0)
    assert second is not None and (second.index, second.mode) == (1, "stall")
    only = FirestoreFaults(every_seconds=10, down_seconds=2, mode="stall")
    assert {window_at(only, 5 + 10 * i).mode for i in range(4)} == {"stall"}  # type: ignore[union-attr]


def test_the_supervisor_counts_injected_crashes_and_respawns(tmp_path: Path) -> None:
    counts = FaultCounts(tmp_path / "crash-deploy.json")
    count_line("hekaton: injected crash at after_commit\n", counts)
    count_line("[ERROR] Worker (pid:4242) exited with code 86\n", counts)
    count_line("[ERROR] Worker (pid:4243) exited with code 1\n", counts)  # a real failure
    count_line("INFO hekaton handled message 7\n", counts)
    # Two workers' lines met in the pipe with no newline between them: both counted, by name.
    count_line(
        "hekaton: injected crash at after_kubehekaton: injected crash at after_kube\n", counts
    )
    assert counts.snapshot() == {"after_commit": 1, "after_kube": 2, "worker_restarts": 1}
    assert totals_by_kind(tmp_path) == {
        "crash.after_commit": 1,
        "crash.after_kube": 2,
        "crash.worker_restarts": 1,
    }


class _Function(BaseHTTPRequestHandler):
    """A stand-in function: counts the pushes it got, answers 204."""

    received: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append(self.path)
        self.send_response(204)
        self.end_headers()


def test_the_proxy_duplicates_and_fails_pushes_as_planned(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Function)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        _Function.received = []
        counts = FaultCounts(tmp_path / "delivery.json")
        always_copy = DeliveryProxy(
            {"deploy": url}, DeliveryFaults(duplicate=1.0), Dice(0, "d"), counts
        )
        answer = always_copy.deliver("/deploy/projects/p/topics/t", b"{}", {})
        assert answer.status == 204
        assert _wait_for(lambda: len(_Function.received) == 2)
        assert _Function.received == ["/projects/p/topics/t"] * 2

        _Function.received = []
        always_fail = DeliveryProxy({"deploy": url}, DeliveryFaults(fail=1.0), Dice(0, "d"), counts)
        statuses = [always_fail.deliver("/deploy/x", b"{}", {}).status for _ in range(20)]
        assert set(statuses) <= {500, 503}
        delivered_anyway = len(_Function.received)
        assert 0 < delivered_anyway < 20  # some failed after the function handled them (ack lost)
        assert always_fail.deliver("/nobody/x", b"{}", {}).status == 404
        snapshot = counts.snapshot()
        assert snapshot["duplicate"] == 1 and snapshot["fail_after"] == delivered_anyway
        assert snapshot["fail_before"] == 20 - delivered_anyway
    finally:
        server.shutdown()
        server.server_close()


def _wait_for(condition: Any, timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


class _Scripted(KubeFaultInjector):
    """An injector whose plans the test gives, one per request."""

    def __init__(self, plans: list[Any]) -> None:
        self.plans = plans

    def plan(self, method: str, *, watch: bool) -> Any:
        return self.plans.pop(0)


def test_the_api_server_answers_injected_errors_and_conflicts_and_changes_nothing() -> None:
    import http.client

    from local.faults.kube import KubePlan
    from local.kube.apiserver import ApiServer
    from local.kube.registry import Registry
    from local.kube.store import Store

    injector = _Scripted(
        [KubePlan(conflict=True), KubePlan(error_code=503), KubePlan(), KubePlan()]
    )
    server = ApiServer(Registry(Store(100), [], True), faults=injector)
    server.start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        path = "/api/v1/namespaces"
        body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})

        def call(method: str, payload: str | None = None) -> tuple[int, dict[str, Any]]:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            headers = {"Content-Type": "application/json"}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            answer = response.status, json.loads(response.read())
            conn.close()
            return answer

        conflict, error = call("POST", body), call("POST", body)
        assert conflict[0] == 409 and conflict[1]["reason"] == "Conflict"
        assert error[0] == 503 and "injected fault" in error[1]["message"]
        names = [item["metadata"]["name"] for item in call("GET")[1]["items"]]
        assert "x" not in names  # neither refused write was applied
        assert call("POST", body)[0] == 201
    finally:
        server.stop()


def test_up_reads_the_fault_option_and_refuses_a_bad_one(tmp_path: Path) -> None:
    import argparse

    from cli.stack_commands import options_from
    from local.stack_state import StackError

    def args(**given: Any) -> argparse.Namespace:
        base = {
            "only": None,
            "project": "p",
            "domain": "example.com",
            "faults": None,
            "tick_seconds": 0.5,
        }
        return argparse.Namespace(**{**base, "fault_seed": None, **given})

    assert options_from(args()).faults is None  # off by default
    every = options_from(args(faults="all", fault_seed=4)).faults
    assert every is not None and every.seed == 4 and len(every.kinds()) == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults: {kube: {conflict: -1}}\n")
    with pytest.raises(FaultSpecError, match=r"faults\.kube\.conflict"):
        options_from(args(faults=str(bad)))
    with pytest.raises(StackError, match="--fault-seed needs --faults"):
        options_from(args(fault_seed=3))


def test_a_dropped_watch_is_cut_after_its_first_event() -> None:
    import http.client

    from local.faults.kube import KubePlan
    from local.kube.apiserver import ApiServer
    from local.kube.registry import Registry
    from local.kube.store import Store

    injector = _Scripted([KubePlan(), KubePlan(), KubePlan(drop_watch=True), KubePlan()])
    server = ApiServer(Registry(Store(100), [], True), faults=injector)
    server.start()
    try:
        host, port = server.url.removeprefix("http://").split(":")

        def request(method: str, path: str, body: str | None = None) -> http.client.HTTPResponse:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            return conn.getresponse()

        for name in ("a", "b"):
            doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            assert request("POST", "/api/v1/namespaces", json.dumps(doc)).status == 201
        dropped = request("GET", "/api/v1/namespaces?watch=true&resourceVersion=0&timeoutSeconds=2")
        with pytest.raises(http.client.IncompleteRead) as cut:
            dropped.read()
        assert len([line for line in cut.value.partial.splitlines() if line.strip()]) == 1
        whole = request("GET", "/api/v1/namespaces?watch=true&resourceVersion=0&timeoutSeconds=1")
        assert len([line for line in whole.read().splitlines() if line.strip()]) >= 2
    finally:
        server.stop()
