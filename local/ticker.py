"""A local stand-in for Cloud Scheduler: publish a tick to `hekaton-tick` at a fixed, fast interval."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from datetime import UTC, datetime

from events.steps import TICK_TOPIC


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT, publishing one message per interval."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", required=True)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    args = parser.parse_args(argv)
    from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.001)
    )
    topic = publisher.topic_path(args.project, TICK_TOPIC)
    while not stop.wait(args.interval):
        body = json.dumps({"at": datetime.now(UTC).isoformat(), "source": "local-ticker"}).encode()
        try:
            publisher.publish(topic, body).result(timeout=10)
        except Exception as exc:  # a missed tick is harmless; the next one sweeps the same state
            print(f"tick not published: {exc}", flush=True)
    # The client's background threads would otherwise keep the process alive for seconds.
    publisher.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
