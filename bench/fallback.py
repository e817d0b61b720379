"""Fan-out to HTTP fallback sessions beside the same number of WebSocket clients (spec §15).

    python -m bench.fallback [--conns 1000] [--events 50] [--interval 0.1]

One pusherd process; two client processes, one holding ``--conns`` WebSocket connections
and one holding ``--conns`` ``xhr_streaming`` sessions, each group subscribed to a channel
of its own. Then two phases, one per group: ``--events`` triggers, each carrying its send
time (CLOCK_MONOTONIC, shared by the processes of one machine); every client records the
delay to its receipt. Per phase: delivery latency percentiles, deliveries, and pusherd's
CPU seconds per delivery (from /proc over the phase). Every wait has a deadline.

The client side is asyncio with hand-written protocols for both transports (no JSON
parsing: the send time is found with one regex on the received bytes), so the two groups
cost the client process about the same per message.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import sys
import time
from typing import Any

from bench.load import Target, TriggerClient, cpu_seconds, monotonic_ns
from bench.servers import start_server

STAMP = re.compile(rb"bt:(\d+):(\d+)")
SUBSCRIBED = b"subscription_succeeded"


class Recorder:
    """Receipt delays (ns) of one client process."""

    def __init__(self) -> None:
        self.delays: list[int] = []

    def feed(self, data: bytes) -> None:
        now = monotonic_ns()
        for match in STAMP.finditer(data):
            self.delays.append(now - int(match.group(1)))


class WsClient(asyncio.Protocol):
    """A WebSocket client that subscribes to one channel and records bench events."""

    def __init__(self, key: str, channel: str, recorder: Recorder,
                 subscribed: asyncio.Future[None]) -> None:
        self.key, self.channel, self.recorder = key, channel, recorder
        self.subscribed = subscribed
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write((
            f"GET /app/{self.key}?protocol=7&client=bench&version=1.0 HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.buffer += data
            if b"\r\n\r\n" not in self.buffer:
                return
            self.upgraded = True
            data = self.buffer.split(b"\r\n\r\n", 1)[1]
            self.buffer = b""
            payload = json.dumps({"event": "pusher:subscribe",
                                  "data": {"channel": self.channel, "auth": ""}}).encode()
            mask = os.urandom(4)
            assert self.transport is not None and len(payload) < 126
            self.transport.write(bytes((0x81, 0x80 | len(payload))) + mask + bytes(
                b ^ mask[i % 4] for i, b in enumerate(payload)))
        if not self.subscribed.done() and SUBSCRIBED in data:
            self.subscribed.set_result(None)
        self.recorder.feed(data)


class StreamClient(asyncio.Protocol):
    """An xhr_streaming session's receive request; subscribes once ``o`` has arrived."""

    def __init__(self, key: str, channel: str, recorder: Recorder,
                 subscribed: asyncio.Future[None], port: int) -> None:
        self.key, self.channel, self.recorder = key, channel, recorder
        self.subscribed = subscribed
        self.port = port
        self.session = f"{int.from_bytes(os.urandom(2), 'big') % 1000}/" + os.urandom(6).hex()[:8]
        self.opened = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(  # type: ignore[attr-defined]
            f"POST /pusher/app/{self.key}/{self.session}/xhr_streaming?protocol=7&client=bench"
            "&version=1.0 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        if not self.opened and b"connection_established" in data:
            self.opened = True
            asyncio.get_running_loop().create_task(self._subscribe())
        if not self.subscribed.done() and SUBSCRIBED in data:
            self.subscribed.set_result(None)
        self.recorder.feed(data)

    async def _subscribe(self) -> None:
        frame = json.dumps({"event": "pusher:subscribe",
                            "data": {"channel": self.channel, "auth": ""}})
        body = json.dumps([frame]).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"POST /pusher/app/{self.key}/{self.session}/xhr_send HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            .encode() + body)
        await reader.readuntil(b"\r\n\r\n")  # the 204: the subscription was handed over
        writer.close()


async def client_main(args: argparse.Namespace) -> None:
    """One client process: open the group, say "ready", report on "report" commands."""
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    waits: list[asyncio.Future[None]] = []
    for _ in range(args.conns):
        subscribed: asyncio.Future[None] = loop.create_future()
        waits.append(subscribed)
        if args.transport == "ws":
            await loop.create_connection(
                lambda s=subscribed: WsClient(args.key, args.channel, recorder, s),
                "127.0.0.1", args.port)
        else:
            await loop.create_connection(
                lambda s=subscribed: StreamClient(args.key, args.channel, recorder, s,
                                                  args.port), "127.0.0.1", args.port)
    await asyncio.wait_for(asyncio.gather(*waits), 120)
    print("ready", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.split()[:1] == [b"report"]:
            expected = int(line.split()[1]) if len(line.split()) > 1 else 0
            deadline = time.monotonic() + 60
            while len(recorder.delays) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # polling the bench's own counter, not a server
            delays, recorder.delays = recorder.delays, []
            print(json.dumps({"delays_ns": delays}), flush=True)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[int], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = start_server("pusherd")
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        assert server.pid is not None
        for transport in ("ws", "xhr_streaming"):
            procs[transport] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.fallback", "client", "--transport", transport,
                "--port", str(server.port), "--key", server.credentials.key,
                "--conns", str(args.conns), "--channel", f"bench-{transport}",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                limit=64 * 1024 * 1024)  # a report is one JSON line of every delay
        for proc in procs.values():
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 180)
            if line.strip() != b"ready":
                raise RuntimeError(f"client did not get ready: {line!r}")
        progress(f"{args.conns} WebSocket clients and {args.conns} streaming sessions ready")
        trigger = TriggerClient(Target(server.host, server.port, server.credentials))
        await trigger.connect()
        results: dict[str, Any] = {"conns_per_transport": args.conns, "events": args.events}
        for transport, proc in procs.items():
            progress(f"{transport}: {args.events} triggers")
            cpu_before = cpu_seconds(server.pid)
            for seq in range(args.events):
                await trigger.trigger([f"bench-{transport}"], seq)
                await asyncio.sleep(args.interval)  # the pace of the load, not a wait
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"report {args.events * args.conns}\n".encode())
            await proc.stdin.drain()
            report = json.loads(await asyncio.wait_for(proc.stdout.readline(), 90))
            progress(f"{transport}: {len(report['delays_ns'])} deliveries reported")
            cpu = cpu_seconds(server.pid) - cpu_before
            delays = report["delays_ns"]
            results[transport] = {
                "deliveries": len(delays),
                "expected": args.events * args.conns,
                "p50_ms": percentile(delays, 0.50),
                "p99_ms": percentile(delays, 0.99),
                "max_ms": percentile(delays, 1.0),
                "server_cpu_s": round(cpu, 3),
                "server_cpu_us_per_delivery": round(cpu / len(delays) * 1e6, 2)
                if delays else None,
            }
        trigger.close()
        return results
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fallback", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    client = sub.add_parser("client", help="(internal) one client process")
    client.add_argument("--transport", choices=("ws", "xhr_streaming"), required=True)
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--key", required=True)
    client.add_argument("--conns", type=int, required=True)
    client.add_argument("--channel", required=True)
    parser.add_argument("--conns", type=int, default=1000,
                        help="connections per transport (default 1000)")
    parser.add_argument("--events", type=int, default=50, help="triggers per phase")
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between triggers (default 0.1)")
    args = parser.parse_args(argv)
    if args.command == "client":
        try:
            import uvloop  # optional, as in the rest of the bench
            uvloop.install()
        except ImportError:
            pass
        asyncio.run(client_main(args))
        return 0
    results = asyncio.run(run(args))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
