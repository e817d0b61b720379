"""The load side: building and driving the C workers, the trigger client, the statistics."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.signing import AppCredentials, build_trigger_request

BENCH_DIR = Path(__file__).resolve().parent
WORKER_SOURCE = BENCH_DIR / "worker.c"
WORKER_BINARY = BENCH_DIR / "bin" / "pusher-load"
CONNS_PER_WORKER = 5000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def build_worker() -> Path:
    """Compile bench/worker.c into bench/bin/pusher-load unless the binary is up to date."""
    if (
        WORKER_BINARY.exists()
        and WORKER_BINARY.stat().st_mtime >= WORKER_SOURCE.stat().st_mtime
    ):
        return WORKER_BINARY
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc/gcc) found to build bench/worker.c")
    WORKER_BINARY.parent.mkdir(exist_ok=True)
    tmp = WORKER_BINARY.with_suffix(f".tmp{os.getpid()}")
    subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(tmp), str(WORKER_SOURCE)],
        check=True, capture_output=True, timeout=120,
    )
    tmp.replace(WORKER_BINARY)
    return WORKER_BINARY


def monotonic_ns() -> int:
    """The clock the workers read (CLOCK_MONOTONIC): trigger send times are in it."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_side_sockets(port: int, remote_prefix: tuple[int, int, int]) -> dict[str, int]:
    """TCP sockets of the local server `port` whose peer is in `remote_prefix`.0/24.

    Read from /proc/net/tcp, so it sees what the server's kernel sees whatever the server
    is: how many are still ESTABLISHED, how many were closed but still hold unsent bytes
    (FIN-WAIT-1 orphans), and those unsent bytes in total.
    """
    established = closing = queued = 0
    port_hex = f"{port:04X}"
    try:
        with open("/proc/net/tcp") as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
                if not local.endswith(":" + port_hex):
                    continue
                ip = remote.split(":")[0]
                octets = (int(ip[6:8], 16), int(ip[4:6], 16), int(ip[2:4], 16))
                if octets != remote_prefix:
                    continue
                tx = int(queues.split(":")[0], 16)
                if state == "01":
                    established += 1
                else:
                    closing += 1
                    queued += tx
    except OSError:
        pass
    return {"established": established, "closing": closing, "closing_unsent_bytes": queued}


def core_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies from /proc/stat; busy includes irq and softirq time,
    where the kernel does loopback TCP work that no process is charged for."""
    times: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                numbers = [int(v) for v in values[:8]]
                idle = numbers[3] + numbers[4]  # idle + iowait
                total = sum(numbers)
                times[int(name[3:])] = (total - idle, total)
    return times


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` in bytes (VmRSS), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


# ----------------------------------------------------------------- histogram

def bucket_value_us(index: int) -> float:
    """The representative value (µs) of the worker's log-linear bucket `index`."""
    if index < 1024:
        return index + 0.5
    exponent = (index - 1024) // 512 + 10
    mantissa = (index - 1024) % 512 + 512
    shift = exponent - 9
    return (mantissa << shift) + (1 << shift) / 2


@dataclass
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)

    def merge(self, raw: dict[str, int]) -> None:
        for key, count in raw.items():
            index = int(key)
            self.counts[index] = self.counts.get(index, 0) + count

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile_ms(self, fraction: float) -> float | None:
        total = self.total
        if not total:
            return None
        rank = max(1, math.ceil(fraction * total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return round(bucket_value_us(index) / 1000, 3)
        return None

    def summary(self) -> dict[str, float | None]:
        return {
            "p50_ms": self.percentile_ms(0.50),
            "p95_ms": self.percentile_ms(0.95),
            "p99_ms": self.percentile_ms(0.99),
            "p999_ms": self.percentile_ms(0.999),
            "max_ms": self.percentile_ms(1.0),
        }


# ----------------------------------------------------------------- workers

@dataclass
class Target:
    """Where the load goes: a server's address and the app's credentials."""

    host: str
    port: int
    credentials: AppCredentials

    @property
    def ws_path(self) -> str:
        return f"/app/{self.credentials.key}?protocol=7&client=bench&version=1.0"


class Worker:
    """One pusher-load process, driven over its stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process, conns: int) -> None:
        self.process = process
        self.conns = conns
        self.ready: dict[str, Any] | None = None

    async def line(self, prefix: str, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"worker did not print {prefix} in {timeout}s")
            raw = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            if not raw:
                stderr = b""
                if self.process.stderr is not None:
                    stderr = await self.process.stderr.read()
                raise RuntimeError(f"worker exited before {prefix}: {stderr.decode()[-2000:]}")
            text = raw.decode()
            if text.startswith(prefix):
                body = text[len(prefix):].strip()
                return json.loads(body) if body.startswith("{") else {}

    async def command(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()


class LoadGroup:
    """Several workers that together hold the connections of one scenario."""

    def __init__(self, workers: list[Worker], load_cpu: int | None) -> None:
        self.workers = workers
        self.load_cpu = load_cpu
        self.lock = asyncio.Lock()  # one command/reply exchange at a time per worker pipe

    @classmethod
    async def start(
        cls,
        target: Target,
        conns: int,
        *,
        channel: str | None = None,
        channel_fmt: str | None = None,
        slow: int = 0,
        slow_channel: str | None = None,
        slow_src: str | None = None,
        concurrency: int = 128,
        connect_timeout: float = 120.0,
        max_time: float = 900.0,
        load_cpu: int | None = None,
        mode: str = "ws",
        request_file: Path | None = None,
        nodes: list[tuple[str, int]] | None = None,
    ) -> LoadGroup:
        """Start the workers; with `nodes` (host, port) worker i connects to node i mod
        len(nodes) (at least one worker per node), so the connections are split evenly."""
        binary = build_worker()
        nodes = nodes or [(target.host, target.port)]
        n_workers = max(len(nodes), math.ceil(conns / CONNS_PER_WORKER))
        if n_workers % len(nodes):
            n_workers += len(nodes) - n_workers % len(nodes)
        per_worker = [conns // n_workers + (1 if i < conns % n_workers else 0)
                      for i in range(n_workers)]
        slow_per = [slow // n_workers + (1 if i < slow % n_workers else 0)
                    for i in range(n_workers)]
        workers: list[Worker] = []
        offset = 0
        for i, count in enumerate(per_worker):
            host, port = nodes[i % len(nodes)]
            args = [
                str(binary), "--mode", mode, "--host", host, "--port", str(port),
                "--path", target.ws_path, "--conns", str(count),
                "--concurrency", str(max(1, concurrency // n_workers)),
                "--connect-timeout", str(connect_timeout), "--max-time", str(max_time),
            ]
            if host.startswith("127."):
                # spread source addresses so that ephemeral ports never run short
                args += ["--src", f"127.0.{(i // 250) + 1}.{(i % 250) + 2}"]
            if channel_fmt:
                args += ["--channel-fmt", channel_fmt, "--channel-offset", str(offset)]
            elif channel:
                args += ["--channel", channel]
            if slow_per[i]:
                args += ["--slow", str(slow_per[i])]
                if slow_channel:
                    args += ["--slow-channel", slow_channel]
                if slow_src:
                    args += ["--slow-src", slow_src]
            if request_file is not None:
                args += ["--request-file", str(request_file)]
            process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024,
            )
            if load_cpu is not None:
                os.sched_setaffinity(process.pid, {load_cpu})
            workers.append(Worker(process, count))
            offset += count
        return cls(workers, load_cpu)

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self.workers]

    async def wait_ready(self, timeout: float) -> dict[str, Any]:
        results = await asyncio.gather(*(w.line("READY", timeout) for w in self.workers))
        for worker, result in zip(self.workers, results, strict=True):
            worker.ready = result
        return {
            "subscribed": sum(r["subscribed"] for r in results),
            "failed": sum(r["failed"] for r in results),
            "elapsed_s": max(r["elapsed_s"] for r in results),
        }

    async def broadcast(self, command: str, reply: str | None, timeout: float = 30.0) -> list[
        dict[str, Any]
    ]:
        async with self.lock:
            for worker in self.workers:
                await worker.command(command)
            if reply is None:
                return []
            return list(await asyncio.gather(*(w.line(reply, timeout) for w in self.workers)))

    async def stat(self) -> dict[str, int]:
        stats = await self.broadcast("STAT", "STAT")
        return {key: sum(s[key] for s in stats) for key in
                ("received", "normal_received", "cut", "slow_cut", "normal_cut", "api_ok")}

    async def stop(self, timeout: float = 60.0) -> tuple[dict[str, Any], Histogram]:
        results = await self.broadcast("STOP", "RESULT", timeout)
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 10)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
        hist = Histogram()
        total: dict[str, Any] = {}
        for result in results:
            hist.merge(result.pop("hist"))
            for key, value in result.items():
                if key in ("min_per_conn",):
                    total[key] = min(total.get(key, value), value)
                elif key in ("max_per_conn", "max_latency_us", "api_elapsed_s", "ready_s"):
                    total[key] = max(total.get(key, value), value)
                else:
                    total[key] = total.get(key, 0) + value
        return total, hist

    def kill(self) -> None:
        for worker in self.workers:
            if worker.process.returncode is None:
                worker.process.kill()


# ----------------------------------------------------------------- triggers

class HttpClientProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive client: one request in flight, status code out."""

    def __init__(self) -> None:
        self.buffer = b""
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            status = int(head.split(" ", 2)[1])
            self.buffer = self.buffer[end + 4 + length:]
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("server closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)


class TriggerClient:
    """Signed triggers over one keep-alive connection; data carries the send time."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.protocol: HttpClientProtocol | None = None
        self.sent = 0
        self.ok = 0
        self.errors: dict[int, int] = {}

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            HttpClientProtocol, self.target.host, self.target.port
        )
        self.protocol = protocol

    async def trigger(self, channels: list[str], seq: int, pad: str = "",
                      timeout: float = 30.0) -> int:
        assert self.protocol is not None and self.protocol.transport is not None
        stamp = monotonic_ns()
        body = orjson.dumps(
            {"name": "bench", "channels": channels, "data": f"bt:{stamp}:{seq}:{pad}"}
        )
        request = build_trigger_request(
            self.target.credentials, self.target.host, self.target.port, body
        )
        waiter = asyncio.get_running_loop().create_future()
        self.protocol.waiter = waiter
        self.protocol.transport.write(request)
        self.sent += 1
        status: int = await asyncio.wait_for(waiter, timeout)
        if status == 200:
            self.ok += 1
        else:
            self.errors[status] = self.errors.get(status, 0) + 1
        return status

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()


def write_api_requests(target: Target, path: Path, count: int = 64) -> None:
    """Pre-sign `count` distinct trigger requests (valid ±600 s) for the C api worker."""
    stamp = int(time.time())
    chunks = []
    for i in range(count):
        body = orjson.dumps(
            {"name": "bench", "channels": [f"api-nobody-{i}"], "data": f"api:{i}"}
        )
        chunks.append(build_trigger_request(target.credentials, target.host, target.port,
                                            body, stamp))
    path.write_bytes(b"\n--REQ--\n".join(chunks))
