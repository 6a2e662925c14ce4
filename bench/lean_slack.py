"""A minimal stand-in for Slack's Web API, in its own process, for the acknowledgement load.

`python -m bench.lean_slack --port P`: every GET or POST is answered 200 with `{"ok": true, ...}`
(`views.open` with a view id, `chat.postMessage` with a channel and a ts, `auth.test` with a bot);
nothing is recorded. HTTP/1.1 keep-alive, `Connection: close` honoured (slack_sdk's urllib sends
it, one connection per call), bodies read by Content-Length or chunked, listen backlog 1024.

Why it exists: under load every /sms-send makes a views.open call. The recording fake of
tests/fakes.py (a thread per connection, every request kept, every view parsed and echoed) spends
about 0.5 ms of CPU per command in the benchmark's process; on a machine of two cores shared with
the apps, that CPU would be counted against the apps, whereas in production Slack's servers do
that work. An asyncio loop with canned answers costs a small fraction of it.

On SIGTERM or SIGINT it prints one JSON line, the number of requests answered by path, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
from urllib.parse import parse_qsl

MAX_HEADER = 64 * 1024
OK = b'{"ok": true}'
CANNED = {
    b"/api/views.open": b'{"ok": true, "view": {"id": "V1"}}',
    b"/api/auth.test": b'{"ok": true, "url": "https://acme.slack.com/", "team": "Acme", "user": "bot", '
                       b'"team_id": "T1", "user_id": "UBOT", "bot_id": "BBOT"}',
}


def _response(body: bytes, close: bool) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: %s\r\n\r\n%s" % (len(body), b"close" if close else b"keep-alive", body))


# Whole responses, built once: (path, close) -> bytes.
_READY = {(path, close): _response(body, close) for path, body in CANNED.items() for close in (False, True)}
_OK = {close: _response(OK, close) for close in (False, True)}


class LeanSlack:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}  # path -> requests answered: a dict update per request
        self._ts = itertools.count(1)

    def answer(self, path: bytes, body: bytes, close: bool) -> bytes:
        ready = _READY.get((path, close))
        if ready is not None:
            return ready
        if path == b"/api/chat.postMessage":
            return _response(json.dumps({"ok": True, "channel": _channel(body),
                                         "ts": f"1700000000.{next(self._ts):06d}"}).encode(), close)
        return _OK[close]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:  # the client closed between requests
                    break
                lines = head.split(b"\r\n")
                parts = lines[0].split(b" ")
                if len(parts) != 3:
                    break
                path = parts[1].split(b"?", 1)[0]
                close = parts[2] != b"HTTP/1.1"
                length, chunked = 0, False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding":
                        chunked = b"chunked" in value.lower()
                    elif name == b"connection":
                        token = value.strip().lower()
                        close = token == b"close" or (close and token != b"keep-alive")
                if chunked:
                    body = await _read_chunked(reader)
                elif length:
                    body = await reader.readexactly(length)
                else:
                    body = b""
                key = path.decode("latin-1")
                self.counts[key] = self.counts.get(key, 0) + 1
                writer.write(self.answer(path, body, close))
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _channel(body: bytes) -> str | None:
    try:
        params = json.loads(body) if body.lstrip()[:1] == b"{" else dict(parse_qsl(body.decode()))
    except ValueError:
        return None
    channel = params.get("channel") if isinstance(params, dict) else None
    return str(channel) if channel is not None else None


async def serve(host: str, port: int) -> dict[str, int]:
    slack = LeanSlack()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await asyncio.start_server(slack.handle, host, port, backlog=1024, limit=MAX_HEADER)
    await stop.wait()
    server.close()  # open keep-alive connections are dropped when the loop ends
    return slack.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    counts = asyncio.run(serve(args.host, args.port))
    print(json.dumps(counts, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
