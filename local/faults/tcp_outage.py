"""Firestore unavailable for a while: a TCP proxy in front of the emulator with outage windows.

``python -m local.faults.tcp_outage --spec FILE --counts FILE --port N --upstream HOST:PORT``.
The functions reach Firestore through it. Outages start ``first_after_seconds`` after start, then
every ``every_seconds``, and last ``down_seconds``; in a *refuse* window every open connection is
cut and new ones are closed at once (a restarting backend), in a *stall* window no byte moves in
either direction and new connections wait (a network partition); ``both`` alternates them.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass

from local.faults.counts import FaultCounts
from local.faults.spec import FirestoreFaults, injector_parser, read_spec

_TICK_SECONDS = 0.05


@dataclass(frozen=True)
class Window:
    """One outage: its number, kind and end (seconds after the proxy started)."""

    index: int
    mode: str  # "refuse" or "stall"
    ends_at: float


def window_at(faults: FirestoreFaults, elapsed: float) -> Window | None:
    """The outage in force `elapsed` seconds after start, if any."""
    since_first = elapsed - faults.first_after_seconds
    if since_first < 0:
        return None
    index = int(since_first // faults.every_seconds)
    start = faults.first_after_seconds + index * faults.every_seconds
    if elapsed >= start + faults.down_seconds:
        return None
    mode = faults.mode if faults.mode != "both" else ("refuse", "stall")[index % 2]
    return Window(index, mode, start + faults.down_seconds)


class OutageProxy:
    """Accepts connections and pipes them to the upstream, except during outage windows."""

    def __init__(
        self, faults: FirestoreFaults, upstream: tuple[str, int], counts: FaultCounts
    ) -> None:
        self.faults = faults
        self.upstream = upstream
        self.counts = counts
        self.started = time.monotonic()
        self._seen_windows: set[int] = set()
        self._lock = threading.Lock()

    def window(self) -> Window | None:
        """The outage in force now (counted once per window)."""
        current = window_at(self.faults, time.monotonic() - self.started)
        if current is not None:
            with self._lock:
                if current.index not in self._seen_windows:
                    self._seen_windows.add(current.index)
                    self.counts.add(f"{current.mode}_windows")
        return current

    def _wait_out(self, window: Window) -> None:
        remaining = window.ends_at - (time.monotonic() - self.started)
        if remaining > 0:
            threading.Event().wait(remaining)  # the stall itself

    def serve(self, listener: socket.socket) -> None:
        """Accept forever; one thread per connection."""
        while True:
            client, _ = listener.accept()
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        window = self.window()
        if window is not None and window.mode == "refuse":
            self.counts.add("connections_refused")
            client.close()
            return
        if window is not None:
            self.counts.add("connections_stalled")
            self._wait_out(window)
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        self._pipe(client, upstream)

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while True:
                window = self.window()
                if window is not None and window.mode == "refuse":
                    self.counts.add("connections_cut")
                    return
                if window is not None:
                    self._wait_out(window)
                    continue
                readable, _, _ = select.select(list(peers), [], [], _TICK_SECONDS)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    peers[source].sendall(data)
        except OSError:
            return
        finally:
            for sock in peers:
                sock.close()


def main(argv: list[str] | None = None) -> int:
    """Serve until killed."""
    parser = injector_parser("python -m local.faults.tcp_outage", __doc__)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the emulator")
    args = parser.parse_args(argv)
    faults = read_spec(args.spec).firestore or FirestoreFaults()
    host, _, port = args.upstream.rpartition(":")
    listener = socket.create_server((args.host, args.port), reuse_port=False)
    print(f"listening on {args.host}:{args.port}", flush=True)
    OutageProxy(faults, (host, int(port)), FaultCounts(args.counts)).serve(listener)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
