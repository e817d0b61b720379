"""A private redis-server for the scale-out benchmarks, and what it did: commands, CPU.

The bench starts its own redis-server on a free 127.0.0.1 port (no persistence), so that
``INFO commandstats`` counts only the commands of the pusherd nodes under test and the
shared Redis of the machine is never touched. Stopped (and its files removed) afterwards.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from bench.load import cpu_seconds


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _command(port: int, *words: str, timeout: float = 5.0) -> bytes:
    """One command in RESP over a fresh connection; the raw reply (a bulk string's body)."""
    request = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(w.encode())}\r\n{w}\r\n".encode() for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith((b"+", b"-", b":")) and data.endswith(b"\r\n"):
                return data[1:-2]
            if data.startswith(b"$"):
                head, _, body = data.partition(b"\r\n")
                length = int(head[1:])
                if length < 0:
                    return b""
                if len(body) >= length + 2:
                    return body[:length]
        raise TimeoutError(f"redis on port {port} did not answer {words[0]}")


@dataclass
class RedisStats:
    """Calls per command (``INFO commandstats``) and the server's CPU seconds at one time."""

    calls: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0

    def minus(self, earlier: RedisStats) -> RedisStats:
        calls = {name: n - earlier.calls.get(name, 0) for name, n in self.calls.items()}
        return RedisStats({k: v for k, v in calls.items() if v}, self.cpu_s - earlier.cpu_s)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class PrivateRedis:
    """A redis-server of our own on a free port: ``url``, ``stats()``, ``stop()``."""

    def __init__(self, startup_timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (Debian package redis-server)")
        self.dir = tempfile.TemporaryDirectory(prefix="bench-redis-")
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir.name, "--maxclients", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                if _command(self.port, "PING", timeout=1.0) == b"PONG":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stats(self) -> RedisStats:
        """The commands counted so far (``INFO`` itself excluded) and the CPU used."""
        text = _command(self.port, "INFO", "commandstats").decode()
        calls: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line[len("cmdstat_"):].partition(":")
                fields = dict(item.split("=", 1) for item in rest.split(","))
                if name != "info":
                    calls[name] = int(fields["calls"])
        return RedisStats(calls, cpu_seconds(self.process.pid))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.dir.cleanup()
