"""``python -m bench.instructions``: CPU instructions per operation, counted by callgrind.

Seconds on a shared 2-core machine drift with whatever else runs; instruction counts do
not (valgrind's callgrind counts the instructions the process executes, whatever the
load). This script feeds pusherd's connection objects in process, without sockets (a
transport stub records what would be written), and counts the instructions of each
workload at two sizes; the difference divided by the difference in size is the cost of
one operation, free of start-up and import costs:

* ``api``: one signed ``POST /apps/{id}/events`` on a keep-alive connection, answered;
* ``connect``: one WebSocket upgrade answered with ``connection_established``;
* ``fanout``: one trigger delivered to each of 200 subscribed sockets, per delivery;
* ``fanout-xhr``: the same to 200 ``xhr_streaming`` sessions (HTTP fallback, §15);
* ``subscribe``: one ``pusher:subscribe`` + ``pusher:unsubscribe`` pair on a socket;
* ``api-redis``: ``api`` with the Redis adapter (docs/scaling.md), on the publishing node:
  the request answered and the bus message encoded and queued. The adapter is not started
  (no Redis is needed), so redis-py's write of the queued ``PUBLISH`` (one per trigger, in
  the writer task) is not counted;
* ``api-redis-live``: ``api`` with the Redis adapter started against a private
  redis-server, counting the whole process: the request answered, the bus writer's round
  trip that publishes it and the node's reading (and dropping) of its own echo. Triggers
  come one at a time (the next once the echo is back), so nothing is amortised over
  several triggers;
* ``api-redis-burst``: the same, eight requests received at once (one chunk on one
  keep-alive connection) before waiting for the echo of the last: what is amortised when
  triggers arrive concurrently; per trigger;
* ``bus-receive``: a node that only receives: another node's trigger (for a channel
  nobody here subscribes to) arrives on the bus, is read and applied; one at a time. The
  publisher is a raw socket in the same process (a few hundred instructions a message).

The live workloads also print the Redis commands per operation (``INFO commandstats`` of
the private redis-server, same slope).

``--checkout PATH,...`` compares the pusherd packages of several checkouts (e.g. a git
worktree of an earlier commit) in one run, printing the ratio of each to the first.

    python -m bench.instructions [--checkout /path/to/old,/path/to/new] [--size 400]

Needs ``valgrind`` (Debian package); figures are instructions, not time: read them as
ratios between versions, and remember that a syscall's kernel work is not counted.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("api", "connect", "fanout", "fanout-xhr", "subscribe", "api-redis",
             "api-redis-live", "api-redis-burst", "bus-receive")
LIVE_WORKLOADS = ("api-redis-live", "api-redis-burst", "bus-receive")
BURST = 8  # requests per chunk in api-redis-burst
FANOUT_SUBSCRIBERS = 200
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


# --- the workloads (run inside valgrind, in the child process) ---------------------------


class _Transport:
    """The parts of an asyncio transport pusherd's connection objects use."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def can_write_eof(self) -> bool:
        return True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def write_eof(self) -> None:
        pass


def _masked_text_frame(payload: bytes) -> bytes:
    """A client's (masked) WebSocket text frame, mask of zeros (RFC 6455 §5.3)."""
    length = len(payload)
    header = bytes((0x81, 0x80 | length)) if length < 126 else (
        bytes((0x81, 0x80 | 126)) + length.to_bytes(2, "big"))
    return header + b"\0\0\0\0" + payload


# Fixed Sec-WebSocket-Keys and socket ids: the same bytes, so the same instructions, each
# run. With random ones (os.urandom, the server's random socket ids) the setup of the 200
# fanout sockets cost a different number of instructions in each run (dict collisions,
# ids of 1 to 10 digits), and that difference fell into the slope as noise.
_KEYS = random.Random(20261130)


def _upgrade_request() -> bytes:
    key = base64.b64encode(_KEYS.randbytes(16))
    return (b"GET /app/bench-key?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n\r\n")


def _run_workload(workload: str, size: int) -> None:
    import pusherd
    from bench.signing import AppCredentials, build_trigger_request
    from pusherd.config import load_config
    from pusherd.server.protocol import ServerProtocol
    from pusherd.server.server import Server

    print(f"pusherd from {Path(pusherd.__file__).parents[1]}", file=sys.stderr)
    credentials = AppCredentials("1001", "bench-key", "bench-secret")
    env = {"PUSHERD_APP_ID": credentials.app_id, "PUSHERD_APP_KEY": credentials.key,
           "PUSHERD_APP_SECRET": credentials.secret}
    if workload in LIVE_WORKLOADS:  # the Redis adapter, started: a private redis-server
        env["PUSHERD_REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
    elif workload.endswith("-redis"):  # the Redis adapter, never started: nothing connects
        env["PUSHERD_REDIS_URL"] = "redis://127.0.0.1:1/0"
        workload = workload.removesuffix("-redis")
    config = load_config(env=env)
    if os.environ.get("BENCH_METRICS") == "off" and hasattr(config, "metrics"):
        import dataclasses

        config = dataclasses.replace(config, metrics=dataclasses.replace(
            config.metrics, enabled=False))
    if workload in LIVE_WORKLOADS:
        import dataclasses

        # No lease renewal nor reaping during the run: they are timers, not per operation.
        config = dataclasses.replace(config, redis=dataclasses.replace(
            config.redis, prefix=os.environ["BENCH_REDIS_PREFIX"], lease_ttl=3600.0,
            reap_interval=3600.0))
    server = Server(config)
    state = getattr(server, "state", None)
    if isinstance(getattr(state, "_random", None), random.Random):
        state._random.seed(20261130)  # type: ignore[union-attr]  # fixed socket ids
    # A checkout from before the seams refactor builds its protocol from the server.
    context = getattr(server, "context", server)

    def connection() -> Any:
        protocol = ServerProtocol(context)  # type: ignore[arg-type]
        protocol.connection_made(_Transport())  # type: ignore[arg-type]
        return protocol

    def trigger(channel: str) -> bytes:
        return build_trigger_request(credentials, "127.0.0.1", 6001, orjson.dumps(
            {"name": "bench", "channels": [channel], "data": "x" * 40}), int(time.time()))

    if workload in LIVE_WORKLOADS:
        _run_live(workload, size, server, connection, trigger)
    elif workload == "api":
        http = connection()
        requests = [trigger(f"api-nobody-{i}") for i in range(64)]
        for i in range(size):
            http.data_received(requests[i & 63])
    elif workload == "connect":
        upgrades = [_upgrade_request() for _ in range(size)]
        for request in upgrades:
            connection().data_received(request)
    elif workload == "fanout":
        subscribe = _masked_text_frame(orjson.dumps(
            {"event": "pusher:subscribe", "data": {"channel": "fanout"}}))
        for _ in range(FANOUT_SUBSCRIBERS):
            socket = connection()
            socket.data_received(_upgrade_request())
            socket.data_received(subscribe)
        http = connection()
        request = trigger("fanout")
        for _ in range(size // FANOUT_SUBSCRIBERS or 1):
            http.data_received(request)
    elif workload == "fanout-xhr":
        streams = [connection() for _ in range(FANOUT_SUBSCRIBERS)]
        for number, stream in enumerate(streams):
            stream.data_received(
                b"POST /pusher/app/bench-key/1/s%07d/xhr_streaming?protocol=7 HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n" % number)
        sender = connection()  # one keep-alive connection for every session's xhr_send
        body = orjson.dumps([orjson.dumps(
            {"event": "pusher:subscribe", "data": {"channel": "fanout"}}).decode()])
        for number in range(FANOUT_SUBSCRIBERS):
            sender.data_received(
                b"POST /pusher/app/bench-key/1/s%07d/xhr_send HTTP/1.1\r\nHost: 127.0.0.1"
                b"\r\nContent-Length: %d\r\n\r\n%s" % (number, len(body), body))
        http = connection()
        request = trigger("fanout")
        for _ in range(size // FANOUT_SUBSCRIBERS or 1):
            http.data_received(request)
    elif workload == "subscribe":
        socket = connection()
        socket.data_received(_upgrade_request())
        pair = [_masked_text_frame(orjson.dumps(
            {"event": event, "data": {"channel": "room"}}))
            for event in ("pusher:subscribe", "pusher:unsubscribe")]
        for _ in range(size):
            socket.data_received(pair[0])
            socket.data_received(pair[1])


def _run_live(workload: str, size: int, server: Any, connection: Any, trigger: Any) -> None:
    """The live workloads: the adapter started, its link and writer running (uvloop, as
    pusherd runs)."""
    import asyncio
    import socket

    try:
        import uvloop
        run: Any = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run

    async def main() -> None:
        adapter = server.adapter
        await adapter.start()
        link = adapter.link
        loop = asyncio.get_running_loop()
        waiting: list[tuple[bytes, asyncio.Future[None]]] = []
        on_message = link._on_message

        def watched(payload: bytes) -> None:  # every payload the node reads, own echo too
            on_message(payload)
            if waiting and waiting[0][0] in payload:
                waiting.pop()[1].set_result(None)

        link._on_message = watched

        async def until_read(marker: bytes) -> None:
            done: asyncio.Future[None] = loop.create_future()
            waiting.append((marker, done))
            await asyncio.wait_for(done, 60)

        async def written(triggers: int) -> None:
            # The echo may be read before the writer has read its pipeline's reply.
            while adapter.bus.published < triggers:
                await asyncio.sleep(0)

        http = connection()
        if workload == "api-redis-live":
            requests = [(trigger(f"api-nobody-{i}"), f"api-nobody-{i}\"".encode())
                        for i in range(64)]
            for i in range(size):
                request, marker = requests[i & 63]
                http.data_received(request)
                await until_read(marker)
                await written(i + 1)
        elif workload == "api-redis-burst":
            chunks = []
            for j in range(8):
                parts = [trigger(f"api-burst-{j}-{k}") for k in range(BURST)]
                chunks.append((b"".join(parts), f"api-burst-{j}-{BURST - 1}\"".encode()))
            for i in range(size // BURST):
                chunk, marker = chunks[i & 7]
                http.data_received(chunk)
                await until_read(marker)
                await written((i + 1) * BURST)
        else:  # bus-receive
            from pusherd.adapters.cluster.bus import TriggerMessage, encode_bus_message

            def publish_command(i: int) -> bytes:
                payload = encode_bus_message(TriggerMessage(
                    "bench-other-node", next(iter(adapter.apps)), "bench",
                    (f"recv-nobody-{i}",), "x" * 40, None))
                words = [b"PUBLISH", link.channel.encode(), payload]
                return b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)

            commands = [(publish_command(i), f"recv-nobody-{i}\"".encode()) for i in range(64)]
            url = os.environ["BENCH_REDIS_URL"].removeprefix("redis://").split("/")[0]
            host, _, port = url.partition(":")
            publisher = socket.create_connection((host, int(port)))
            publisher.setblocking(False)
            for i in range(size):
                command, marker = commands[i & 63]
                publisher.send(command)  # its ":1" replies pile up unread (a few KB)
                await until_read(marker)
            publisher.close()
        print(f"bus received {adapter.bus.received} published {adapter.bus.published}",
              file=sys.stderr)
        await adapter.close()

    run(main())


# --- the driver ----------------------------------------------------------------------------


_REDIS: list[Any] = []  # the private redis-server of the live workloads, started once


def _redis() -> Any:
    if not _REDIS:
        from bench.redis_server import PrivateRedis

        _REDIS.append(PrivateRedis())
    return _REDIS[0]


def _instructions(checkout: Path, workload: str, size: int, metrics: str = "on",
                  commands: list[int] | None = None) -> int:
    # A fixed hash seed: the same dict and set layouts, so the same instructions, each run.
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONHASHSEED": "0",
           "BENCH_METRICS": metrics}
    redis = None
    if workload in LIVE_WORKLOADS:
        redis = _redis()
        env["BENCH_REDIS_URL"] = redis.url
        env["BENCH_REDIS_PREFIX"] = f"bench-{os.getpid()}-{time.monotonic_ns()}"
        before = redis.stats()
    for var in ("PUSHERD_HOST", "PUSHERD_PORT", "PUSHERD_APP_ID", "PUSHERD_APP_KEY",
                "PUSHERD_APP_SECRET", "PUSHERD_REDIS_URL", "REVERB_SCALING_ENABLED"):
        env.pop(var, None)
    # The checkout comes first on sys.path (and is the working directory) so that its
    # pusherd is the one measured; this file is run by path, as the checkout may not have it.
    child = (f"import runpy, sys; sys.path.insert(0, {str(checkout)!r}); "
             f"runpy.run_path({__file__!r})['_run_workload']({workload!r}, {size})")
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-c", child],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=1800,
    )
    if redis is not None and commands is not None:
        commands.append(redis.stats().minus(before).total)
    found = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{workload} failed under valgrind:\n{result.stderr[-3000:]}")
    if f"pusherd from {checkout}" not in result.stderr:
        raise SystemExit(f"{workload}: pusherd was not imported from {checkout}")
    return int(found.group(1))


def per_operation(checkout: Path, workload: str, size: int, metrics: str = "on") -> float:
    """Instructions per operation: the slope between `size` and 2 × `size` operations."""
    if workload.startswith("fanout"):  # whole triggers: a multiple of the subscribers
        size = FANOUT_SUBSCRIBERS * max(1, round(size / FANOUT_SUBSCRIBERS))
    commands: list[int] = []
    small = _instructions(checkout, workload, size, metrics, commands)
    large = _instructions(checkout, workload, 2 * size, metrics, commands)
    if len(commands) == 2:
        print(f"    ({checkout.name}, {workload}: {(commands[1] - commands[0]) / size:.3f} "
              "Redis commands per operation)", flush=True)
    return (large - small) / size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", default=str(REPO_ROOT),
                        help="comma list of checkouts whose pusherd to measure")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--size", type=int, default=400,
                        help="operations in the smaller run (the larger has twice as many)")
    parser.add_argument("--metrics", default="on",
                        help="on, off, or on,off: measure each checkout with [metrics] "
                             "enabled and/or disabled (checkouts without metrics: as they are)")
    args = parser.parse_args(argv)
    checkouts = [Path(c).resolve() for c in args.checkout.split(",")]
    variants = [(c, m) for c in checkouts for m in args.metrics.split(",")]
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload {sorted(unknown)[0]!r} (choose from {WORKLOADS})")
    print(f"instructions per operation (callgrind; slope between {args.size} and "
          f"{2 * args.size} operations; fanout per delivery to {FANOUT_SUBSCRIBERS} sockets)")
    try:
        _measure(workloads, variants, args.size, args.metrics)
    finally:
        if _REDIS:
            _REDIS[0].stop()
    return 0


def _measure(workloads: list[str], variants: list[tuple[Path, str]], size: int,
             metrics_arg: str) -> None:
    for workload in workloads:
        figures = [per_operation(c, workload, size, m) for c, m in variants]
        cells = []
        for (checkout, metrics), figure in zip(variants, figures, strict=True):
            ratio = f" ×{figure / figures[0]:.3f}" if len(figures) > 1 else ""
            label = checkout.name + (f" (metrics {metrics})" if "," in metrics_arg else "")
            cells.append(f"{label}: {figure:,.0f}{ratio}")
        print(f"  {workload:<10} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
