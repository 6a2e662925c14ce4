"""Faults of the test database: a loopback TCP proxy in front of it, to slow it, black-hole it and
bring it back; and a bot's connection pool used up."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from sqlalchemy import Engine


class DatabaseProxy:
    """Forwards TCP to `target`. `black_hole()`: connections are still accepted, but not a byte
    goes either way (a frozen host, a network that drops packets); `restore()` lets them flow again.
    `slow(seconds)`: every chunk is held that long each way, so each round trip to the database
    (a query, a ping, a step of connecting) takes 2 x seconds longer (a loaded server, a far one)."""

    def __init__(self, host: str, port: int, listen_port: int = 0) -> None:
        self.target = (host, port)
        self.flowing = threading.Event()
        self.flowing.set()
        self.delay = 0.0
        self.listener = socket.create_server(("127.0.0.1", listen_port))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def black_hole(self) -> None:
        self.flowing.clear()

    def restore(self) -> None:
        self.flowing.set()
        self.delay = 0.0

    def slow(self, seconds: float) -> None:
        self.delay = seconds

    def close(self) -> None:
        """Stop listening and cut every connection: a database that is gone (its port refuses connections)."""
        self.flowing.set()
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it; close() alone would not
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.flowing.wait()  # a black hole answers nothing, not even by connecting on
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        self.sockets += [client, upstream]
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def pool_used_up(engine: Engine) -> Iterator[None]:
    """Every connection `engine`'s pool may open is checked out (by a burst of slow requests, say)."""
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for connection in held:
            connection.close()
