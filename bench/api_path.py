"""``python -m bench.api_path``: the CPU cost of one signed trigger, step by step, in process.

The ``api`` scenario measures triggers per second over real sockets; this script says where
the server's share of that time goes. It feeds the same pre-signed ``POST /apps/{id}/events``
requests the load generator sends straight into each server's connection object (no
sockets, no event loop: a transport stub that records the answer) and prints microseconds
per request for pusherd, the bare floor and the floor with its minimal signature check,
then pusherd's own steps one at a time. Every answer is checked to be the 200 ``{}`` a
real client would get, so a step that starts failing cannot look fast.

In-process figures are lower than the per-request time on the wire: there the kernel's
TCP work and the wake-up of the client (about 10 µs per request on the bench VM) come on
top, and the caches are colder. Read them as shares, side by side in one run.

    python -m bench.api_path [--requests 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench import floor_frameonce
from bench.signing import AppCredentials, build_trigger_request

OK = b"HTTP/1.1 200 OK\r\n"
CREDENTIALS = AppCredentials("1001", "app-key", "app-secret")


class RecordingTransport:
    """The part of an asyncio transport the HTTP path uses; keeps the last answer."""

    def __init__(self) -> None:
        self.last = b""

    def write(self, data: bytes) -> None:
        self.last = data

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def can_write_eof(self) -> bool:
        return True


def _requests(count: int = 64) -> list[bytes]:
    stamp = int(time.time())
    return [
        build_trigger_request(CREDENTIALS, "127.0.0.1", 6001, orjson.dumps(
            {"name": "bench", "channels": [f"api-nobody-{i}"], "data": f"api:{i}"}), stamp)
        for i in range(count)
    ]


def _per_call_us(step: Callable[[int], object], count: int, repeat: int) -> float:
    """Median over `repeat` timings of `count` calls, in µs per call."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        for i in range(count):
            step(i)
        timings.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(timings)


def _connection_step(protocol: Any, transport: RecordingTransport,
                     requests: list[bytes]) -> Callable[[int], object]:
    protocol.connection_made(transport)
    feed = protocol.data_received
    feed(requests[0])
    if not transport.last.startswith(OK) or not transport.last.endswith(b"{}"):
        raise SystemExit(f"unexpected answer: {transport.last[:200]!r}")
    mask = len(requests) - 1
    return lambda i: feed(requests[i & mask])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    # pusherd is imported here so that the floors above stay free of it.
    from pusherd.config import MetricsConfig, load_config
    from pusherd.core import api
    from pusherd.core.auth import verify_api_request
    from pusherd.server.protocol import ServerProtocol
    from pusherd.server.server import Server

    requests = _requests()
    server = Server(load_config(env={"PUSHERD_APP_ID": CREDENTIALS.app_id,
                                     "PUSHERD_APP_KEY": CREDENTIALS.key,
                                     "PUSHERD_APP_SECRET": CREDENTIALS.secret}))
    app = server.apps.by_id(CREDENTIALS.app_id)
    assert app is not None
    # The same server with [metrics] enabled = false: the difference is what metrics cost
    # a trigger (the per-request timing and its counters).
    server_without_metrics = Server(dataclasses.replace(
        server.config, metrics=MetricsConfig(enabled=False)))

    def floor(verify: bool) -> Any:
        hub = floor_frameonce.Hub(CREDENTIALS.app_id, CREDENTIALS.key, CREDENTIALS.secret,
                                  verify, 1 << 20)
        return floor_frameonce.Connection(hub)

    whole = {
        "floor (no signature check)": _connection_step(floor(False), RecordingTransport(),
                                                       requests),
        "floor-verify (minimal check)": _connection_step(floor(True), RecordingTransport(),
                                                         requests),
        "pusherd": _connection_step(ServerProtocol(server.context), RecordingTransport(),
                                    requests),
        "pusherd, metrics off": _connection_step(
            ServerProtocol(server_without_metrics.context), RecordingTransport(), requests),
    }

    # pusherd's steps, on the parts of one request as the connection hands them over.
    head, _, body = requests[0].partition(b"\r\n\r\n")
    target = head.split(b" ", 2)[1].decode()
    path, _, query = target.partition("?")
    params = api.parse_query(query)
    steps: dict[str, Callable[[int], object]] = {
        "parse_query": lambda i: api.parse_query(query),
        "verify_api_request (MD5 + HMAC-SHA256)": lambda i: verify_api_request(
            app_key=app.key, secret=app.secret, method="POST", paths=(path,),
            params=params, body=body, now=time.time()),
        "parse_trigger (JSON + validation)": lambda i: api.parse_trigger(app, body),
        "parse_trigger + adapter.trigger": lambda i: server.adapter.trigger(
            app, api.parse_trigger(app, body), 0),
        "HttpApi.handle (route + all of the above)": lambda i: server.http_api.handle(
            "POST", path, query, body),
    }
    answer = server.http_api.handle("POST", path, query, body)
    if answer.status != 200:
        raise SystemExit(f"pusherd refused the request: {answer.body!r}")

    print(f"in-process µs per signed trigger (median of {args.repeat} × {args.requests:,})")
    results = {name: _per_call_us(step, args.requests, args.repeat)
               for name, step in whole.items()}
    base = results["floor (no signature check)"]
    for name, value in results.items():
        print(f"  {name:44s} {value:7.2f} µs  ×{value / base:.2f} of the floor's")
    print("pusherd's steps (each includes the ones it calls):")
    for name, step in steps.items():
        print(f"  {name:44s} {_per_call_us(step, args.requests, args.repeat):7.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
