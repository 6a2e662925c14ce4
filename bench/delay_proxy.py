"""A loopback TCP proxy that puts its target at a distance: a chosen round-trip time, in its own process.

    python -m bench.delay_proxy --port P --target 127.0.0.1:Q --rtt-ms 20

Every chunk read from either side is written to the other half the round-trip time after it
was read, in order; a new connection is as if its TCP handshake took one round trip (the first
bytes from the client leave no earlier than a round trip after it connected), so a TLS
handshake and each request then pay their round trips as they would across a network.
Bandwidth and loss are not modelled. A half-close (EOF) is passed on after the same delay, and
the other direction carries on until it too is done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

CHUNK = 64 * 1024


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, not_before: float) -> None:
    """Copy reader to writer, each chunk (and the EOF) `delay` seconds late and never before `not_before`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((max(loop.time(), not_before) + delay, data))
        except ConnectionError:
            pass
        queue.put_nowait((max(loop.time(), not_before) + delay, b""))  # EOF, or the connection broke

    async def write() -> None:
        while True:
            due, data = await queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reading = asyncio.ensure_future(read())
    try:
        await write()
    except ConnectionError:
        pass
    finally:
        reading.cancel()


async def _connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                      target: tuple[str, int], rtt: float) -> None:
    opened = asyncio.get_running_loop().time() + rtt  # the client's SYN, the SYN-ACK, then its first bytes
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(_carry(client_reader, upstream_writer, rtt / 2, opened),
                             _carry(upstream_reader, client_writer, rtt / 2, 0.0))
    finally:
        for writer in (client_writer, upstream_writer):
            writer.close()


async def serve(port: int, target: tuple[str, int], rtt: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await asyncio.start_server(lambda r, w: _connection(r, w, target, rtt), "127.0.0.1", port,
                                        backlog=1024)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--rtt-ms", type=float, required=True, help="the round-trip time to add")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    asyncio.run(serve(args.port, (host, int(port)), args.rtt_ms / 1000))


if __name__ == "__main__":
    main()
