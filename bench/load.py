"""A lean load generator: N keep-alive connections sending signed slash commands as fast as answered.

Runs in its own process (`python -m bench.load`), so the fakes' threads in the benchmark's
process never share a GIL with the clock that measures. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import time
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def signed_request(host: str, port: int, body: bytes, secret: bytes, close: bool = False) -> bytes:
    ts = str(int(time.time())).encode()
    signature = "v0=" + hmac.new(secret, b"v0:" + ts + b":" + body, hashlib.sha256).hexdigest()
    head = (f"POST /slack/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n" + ("Connection: close\r\n" if close else "") +
            f"Content-Length: {len(body)}\r\nX-Slack-Request-Timestamp: {ts.decode()}\r\n"
            f"X-Slack-Signature: {signature}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() != "close"


async def client(host: str, port: int, body: bytes, secret: bytes, remaining: list[int],
                 latencies: list[float], errors: list[int], close: bool) -> None:
    reader = writer = None
    while remaining[0] > 0:
        remaining[0] -= 1
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port)
        assert reader is not None  # opened together with the writer
        request = signed_request(host, port, body, secret, close)
        started = time.perf_counter()
        writer.write(request)
        try:
            status, keep = await read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            errors.append(0)
            writer.close()
            reader = writer = None
            continue
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors.append(status)
        if not keep:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run(host: str, port: int, body: bytes, secret: bytes, concurrency: int, total: int,
              close: bool = False) -> dict[str, Any]:
    remaining: list[int] = [total]
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(*(client(host, port, body, secret, remaining, latencies, errors, close)
                           for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "errors": len(errors), "seconds": elapsed,
            "rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "mean_ms": statistics.fmean(latencies) * 1000,
            "max_ms": max(latencies) * 1000, "latencies_ms": [round(x * 1000, 3) for x in latencies]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--close", action="store_true",
                        help="a new connection per request (the server picks a worker each time), not keep-alive")
    args = parser.parse_args()
    with open(args.body_file, "rb") as body_file:
        body = body_file.read()
    secret = os.environ["SLACK_SIGNING_SECRET"].encode()
    if args.warmup:
        asyncio.run(run(args.host, args.port, body, secret, args.concurrency, args.warmup, args.close))
    print(json.dumps(asyncio.run(run(args.host, args.port, body, secret, args.concurrency, args.requests,
                                     args.close))))


if __name__ == "__main__":
    main()
