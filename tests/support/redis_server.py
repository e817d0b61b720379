"""Redis for tests: a unique key prefix on the shared server, or a private server.

The shared Redis on 127.0.0.1:6379 is used by several people at once: tests only ever
touch keys under their own random prefix and delete exactly those keys afterwards
(never FLUSHDB). Fault tests (killing Redis) start a private ``redis-server`` on a free
port, without persistence, and stop only that process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import redis as redis_sync

SHARED_REDIS_URL = os.environ.get("PUSHERD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    return f"pusherd-test-{uuid.uuid4().hex[:12]}"


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under `prefix` (SCAN + UNLINK, never FLUSHDB); how many."""
    client = redis_sync.Redis.from_url(url)
    try:
        deleted = 0
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{escaped}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
        return deleted
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateRedis:
    """A ``redis-server`` owned by one test; :meth:`kill` and :meth:`start` again on the
    same port simulate an outage (the data is lost: no persistence, as in production
    where Redis holds no state that cannot be rebuilt)."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="pusherd-redis-"))
    extra_args: tuple[str, ...] = ()
    password: str | None = None
    tls_cert: str | None = None  # with tls_key: TLS only (no plain port), this CA = cert
    tls_key: str | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls_cert else "redis"
        auth = f":{self.password}@" if self.password else ""
        query = f"?ssl_ca_certs={self.tls_cert}" if self.tls_cert else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0{query}"

    def _server_args(self) -> list[str]:
        args = ["--port", str(self.port)]
        if self.tls_cert and self.tls_key:
            args = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file",
                    self.tls_cert, "--tls-key-file", self.tls_key, "--tls-ca-cert-file",
                    self.tls_cert, "--tls-auth-clients", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, *self._server_args(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--loglevel", "warning",
             *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Block until the server answers PING (bounded); the server announces nothing
        we could wait on instead, so the connection attempt itself is the event."""
        client = redis_sync.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis_sync.ConnectionError, redis_sync.exceptions.TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    assert self.process is not None
                    if self.process.poll() is not None:
                        raise RuntimeError("redis-server exited at start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the outage a crash or a lost machine causes."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


