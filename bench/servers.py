"""Servers under test: started by the runner (floors, pusherd) or already running (external)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.redis_server import PrivateRedis
from bench.signing import AppCredentials

REPO_ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"listening on https?://([^:\s]+):(\d+)")
DEFAULT_CREDENTIALS = AppCredentials("1001", "bench-key", "bench-secret")

# name -> what it is, for the report
DESCRIPTIONS = {
    "floor": "bench/floor_frameonce.py: bare frame-once server, websockets Sans-I/O, uvloop (B)",
    "floor-a": "bench/floor_starlette.py: Starlette WebSocket routes on uvicorn, uvloop (A)",
    "pusherd": "python -m pusherd, full-featured, one process",
    "pusherd-nometrics": "python -m pusherd with [metrics] enabled = false (the cost of "
                         "metrics is the difference to pusherd)",
    # "pusherd:PATH": the pusherd package found under PATH (another checkout, e.g. a git
    # worktree of an earlier commit), to compare two versions in one run.
    "pusherd-redis": "python -m pusherd, one process, Redis adapter (private redis-server)",
    "pusherd-redis-unpaced": "as pusherd-redis with [redis] frame_interval = 0 (a bus frame "
                             "whenever the last one has returned: the cost of not pacing)",
    "pusherd-2node": "two pusherd processes over one private redis-server; subscribers split "
                     "across them, triggers sent to the first",
    # "pusherd-workers:N": `pusherd --workers N` over a private redis-server (SO_REUSEPORT)
    "external": "an already running server given by --target",
}

REDIS_SECTION = """
[redis]
url = "{url}"
prefix = "{prefix}"
"""


def uses_redis(name: str) -> bool:
    return name in ("pusherd-redis", "pusherd-redis-unpaced", "pusherd-2node") or \
        name.startswith("pusherd-workers:")


def workers_of(name: str) -> int:
    """N of ``pusherd-workers:N`` (1 for every other server)."""
    return int(name.split(":", 1)[1]) if name.startswith("pusherd-workers:") else 1


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (from /proc), e.g. the workers of ``--workers N``."""
    children: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                children += [int(c) for c in handle.read().split()]
    except OSError:
        pass
    return children

PUSHERD_CONFIG = """\
[server]
host = "{host}"
port = 0
activity_timeout = 120

[[apps]]
id = "{app_id}"
key = "{key}"
secret = "{secret}"
enable_client_events = true
enable_user_authentication = true
enable_subscription_count = false
max_connections = 0
allowed_origins = ["*"]
max_presence_members = 100
max_presence_user_info_size = 1024
max_event_data_size = 10240
max_client_events_per_second = 10
"""


@dataclass
class RunningServer:
    """A server the load goes to; `pid` is None for an external server (no RSS/CPU then)."""

    name: str
    host: str
    port: int
    credentials: AppCredentials
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    tmpdir: tempfile.TemporaryDirectory[str] | None = None
    external_pid: int | None = None  # an external server's process, for RSS and CPU
    cpu: int | None = None  # the core the server is pinned to
    prefix: str = ""  # the Redis key prefix of a scale-out variant
    redis: PrivateRedis | None = None  # the private redis-server of a scale-out variant
    peers: list[RunningServer] = field(default_factory=list)  # the other nodes, if several

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else self.external_pid

    @property
    def pids(self) -> list[int]:
        """Every process that serves: this one (or its workers) and the peer nodes'."""
        own: list[int] = []
        if self.pid is not None:
            own = child_pids(self.pid) if self.name.startswith("pusherd-workers:") else [
                self.pid]
        return own + [pid for peer in self.peers for pid in peer.pids]

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node, this one first: where subscribers are spread."""
        return [(self.host, self.port), *((p.host, p.port) for p in self.peers)]

    def alive(self) -> bool:
        return (self.process is None or self.process.poll() is None) and all(
            peer.alive() for peer in self.peers)

    def stop(self, timeout: float = 15.0) -> None:
        for peer in self.peers:
            peer.stop(timeout)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.tmpdir is not None:
            self.tmpdir.cleanup()
            self.tmpdir = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


def server_command(name: str, host: str, credentials: AppCredentials,
                   config_path: Path | None) -> list[str]:
    python = sys.executable
    common = ["--host", host, "--port", "0", "--app-id", credentials.app_id,
              "--app-key", credentials.key]
    if name == "floor":
        return [python, "-m", "bench.floor_frameonce", *common,
                "--app-secret", credentials.secret]
    if name == "floor-verify":
        return [python, "-m", "bench.floor_frameonce", *common,
                "--app-secret", credentials.secret, "--verify"]
    if name == "floor-a":
        return [python, "-m", "bench.floor_starlette", *common]
    if (name in ("pusherd", "pusherd-nometrics") or name.startswith("pusherd:")
            or uses_redis(name)):
        assert config_path is not None
        return [python, "-m", "pusherd", "--config", str(config_path), "--host", host,
                "--port", "0", "--workers", str(workers_of(name))]
    raise ValueError(f"unknown server {name!r}")


def start_server(name: str, *, host: str = "127.0.0.1", cpu: int | None = None,
                 credentials: AppCredentials = DEFAULT_CREDENTIALS,
                 startup_timeout: float = 30.0, extra_env: dict[str, str] | None = None,
                 config_extra: str = "") -> RunningServer:
    """Start `name` on port 0, pinned to `cpu`, and return once it printed its port.
    `config_extra` is appended to pusherd's config (e.g. ``[[apps.webhooks]]``).

    The Redis variants start a private redis-server first (stopped with the server), with
    a prefix of their own; ``pusherd-2node`` starts its second node as a peer on the same
    core. ``pusherd-workers:N`` is not pinned (its N workers share the machine).
    """
    redis = PrivateRedis() if uses_redis(name) else None
    try:
        server = _start_one(name, host, None if name.startswith("pusherd-workers:") else cpu,
                            credentials, startup_timeout, extra_env, redis,
                            f"bench-{uuid.uuid4().hex[:12]}", config_extra)
    except BaseException:
        if redis is not None:
            redis.stop()
        raise
    server.redis = redis
    if name == "pusherd-2node":
        assert redis is not None
        try:
            server.peers.append(_start_one(name, host, cpu, credentials, startup_timeout,
                                           extra_env, redis, server.prefix, config_extra))
        except BaseException:
            server.stop()
            raise
    return server


def _start_one(name: str, host: str, cpu: int | None, credentials: AppCredentials,
               startup_timeout: float, extra_env: dict[str, str] | None,
               redis: PrivateRedis | None, prefix: str, config_extra: str = "",
               ) -> RunningServer:
    tmpdir = tempfile.TemporaryDirectory(prefix="bench-")
    config_path = None
    if (name in ("pusherd", "pusherd-nometrics") or name.startswith("pusherd:")
            or uses_redis(name)):
        config_path = Path(tmpdir.name) / "pusherd.toml"
        text = PUSHERD_CONFIG.format(host=host, app_id=credentials.app_id,
                                     key=credentials.key, secret=credentials.secret)
        text += config_extra
        if redis is not None:
            text += REDIS_SECTION.format(url=redis.url, prefix=prefix)
            if name == "pusherd-redis-unpaced":
                text += "frame_interval = 0\n"
        if name == "pusherd-nometrics":
            text += "\n[metrics]\nenabled = false\n"
        config_path.write_text(text)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    for var in ("PUSHERD_HOST", "PUSHERD_PORT", "PUSHERD_APP_ID", "PUSHERD_APP_KEY",
                "PUSHERD_APP_SECRET", "PUSHERD_REDIS_URL", "REVERB_SCALING_ENABLED"):
        env.pop(var, None)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if name.startswith("pusherd:"):  # that checkout's package first
        checkout = Path(name.split(":", 1)[1]).resolve()
        env["PYTHONPATH"] = str(checkout) + os.pathsep + env["PYTHONPATH"]
    process = subprocess.Popen(
        server_command(name, host, credentials, config_path), cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    if cpu is not None:
        os.sched_setaffinity(process.pid, {cpu})
    output: list[str] = []
    found: list[tuple[str, int]] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            # The first lines, and the drain's own lines whenever they come (bench.drain
            # reads the server's record of its closes after 10,000 connection lines).
            if len(output) < 2000 or "drain" in line:
                output.append(line)
            if not found:
                match = LISTENING.search(line)
                if match:
                    found.append((match.group(1), int(match.group(2))))
                    ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(startup_timeout) or not found:
        process.kill()
        process.wait()
        tmpdir.cleanup()
        raise RuntimeError(f"{name} did not start:\n" + "".join(output[-50:]))
    server = RunningServer(name, found[0][0], found[0][1], credentials, process, output, tmpdir,
                           cpu=cpu)
    server.prefix = prefix
    return server
