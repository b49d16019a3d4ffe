"""A TCP forwarder on a given loopback port: what a test starts to make a dependency reachable again."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


def reserved_port() -> socket.socket:
    """A loopback socket bound to a free port but not listening.

    Connections to its port are refused until a Forwarder listens on it, and meanwhile no other
    process can take the port (a port merely found free could be taken by then).
    """
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    return reserved


class Forwarder:
    """Accepts on a `reserved_port()` socket and pipes each connection to `target`, both ways."""

    def __init__(self, reserved: socket.socket, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = reserved
        self._listener.listen()
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Forwarder:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for held in self._sockets:
            with contextlib.suppress(OSError):
                held.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(self._target, timeout=10)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            source.settimeout(None)
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
