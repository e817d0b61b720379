"""``pusherd --workers N``: N processes sharing one port, as N nodes of one cluster.

The parent binds nothing that serves: it resolves the port (port 0 picks a free one, then
every worker binds that one), forks the workers, waits until each reports it is
listening, and prints the one machine-readable line. Each worker is a whole pusherd
with the Redis adapter, listening with ``SO_REUSEPORT`` so the kernel spreads new
connections over them. SIGTERM, SIGINT or SIGHUP to the parent is passed to every worker, which
drains as a single pusherd does; the parent waits for them (then kills what is left
after the drain's length, ``drain_grace + drain_seconds + shutdown_timeout``, plus a
margin). A worker that dies on its own is started
again (after a pause that grows while it keeps dying early); the cluster removes the
dead worker's members like any dead node's, within the lease bound.

A worker never outlives its parent: if the parent dies without passing a signal on
(``kill -9``, a crash), every worker gets SIGTERM and drains as above. On Linux the kernel
sends it (``PR_SET_PDEATHSIG``); where that is not available, each worker watches a pipe
whose only writer is the parent and sends itself SIGTERM when the pipe reports
end-of-file (:func:`watch_parent`; never both, as a second SIGTERM would cut the drain
short). A parent started again therefore never shares the port with orphans it cannot
stop.

N > 1 needs Redis: the config check (:func:`check_workers`) refuses the start otherwise,
since N processes with their own in-memory state would be N unrelated servers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from pusherd.config import Config
from pusherd.errors import ConfigError

log = logging.getLogger("pusherd.workers")

# A worker reports "ready" on its pipe once listening; it has this long to do so.
START_TIMEOUT = 60.0
RESTART_PAUSE_MAX = 10.0

WorkerMain = Callable[[Config, int, Connection], int]
"""``(config with the resolved port, worker index, ready pipe) -> exit status``."""


def check_workers(config: Config, workers: int) -> None:
    """Raise :class:`ConfigError` unless `workers` processes can form one cluster."""
    if workers < 1:
        raise ConfigError("--workers", f"must be at least 1, got {workers}")
    cores = os.cpu_count() or 1
    if workers > 16 * cores:
        # A worker is a whole server (about 35 MB, its Redis connections, its share of every
        # trigger); far more of them than cores only adds memory and context switches.
        raise ConfigError("--workers", f"at most 16 per core ({16 * cores} on this machine's "
                          f"{cores} cores), got {workers}; one per core is the usual choice")
    if workers > 1 and not config.redis.enabled:
        raise ConfigError(
            "--workers", f"{workers} workers need Redis to share their state ([redis] url, "
            "PUSHERD_REDIS_URL or REVERB_SCALING_ENABLED): without it each worker would "
            "be a separate server with its own channels and members")


def resolve_port(host: str, port: int) -> int:
    """The port the workers will share: `port`, or a free one when it is 0."""
    if port:
        return port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((host or "0.0.0.0", 0))
        return int(probe.getsockname()[1])


class _Worker:
    __slots__ = ("index", "process", "pipe", "started_at", "early_deaths")

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: BaseProcess | None = None
        self.pipe: Connection | None = None
        self.started_at = 0.0
        self.early_deaths = 0


def shared_config(config: Config) -> Config:
    """`config` with every port the workers share resolved: the main port and the
    metrics listener's (a port 0 picks one free port for all of them, not one each)."""
    port = resolve_port(config.server.host, config.server.port)
    shared = replace(config, server=replace(config.server, port=port))
    metrics = config.metrics
    if metrics.enabled and metrics.port == 0:
        metrics_port = resolve_port(metrics.host or config.server.host, 0)
        shared = replace(shared, metrics=replace(metrics, port=metrics_port))
    return shared


def run_workers(config: Config, workers: int, worker_main: WorkerMain,
                on_ready: Callable[[Config], None]) -> int:
    """Run `workers` processes of `worker_main` until SIGTERM/SIGINT; return 0 after a
    clean stop (also one asked for while they started), 1 if the workers could not
    start. `on_ready(shared)` runs once, when every worker listens, with the config the
    workers run (ports resolved: the CLI prints its listening line there)."""
    shared = shared_config(config)
    port = shared.server.port
    context = multiprocessing.get_context("fork")
    stopping: list[int] = []
    # The parent holds the only write end of this pipe (each worker closes its copy at
    # once): when the parent dies, however it dies, every worker reads end-of-file.
    parent_alive_read, parent_alive_write = os.pipe()
    parent_pid = os.getpid()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    # SIGHUP only when not inherited ignored (the nohup convention; see cli.stop_signals).
    hangup = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    previous = {sig: signal.signal(sig, stop)
                for sig in (signal.SIGTERM, signal.SIGINT, *hangup)}
    pool = [_Worker(i) for i in range(workers)]

    def start(worker: _Worker) -> None:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_worker_entry, name=f"pusherd-worker-{worker.index}",
                                  args=(worker_main, shared, worker.index, send, previous,
                                        _ParentWatch(parent_pid, parent_alive_read,
                                                     parent_alive_write)))
        process.start()
        send.close()
        worker.process, worker.pipe, worker.started_at = process, receive, time.monotonic()

    try:
        for worker in pool:
            start(worker)
        if not _wait_ready(pool, stopping):
            _stop_all(pool, _drain_bound(shared))
            # Stopped while the workers started: a clean stop, not a failure.
            return 0 if stopping else 1
        on_ready(shared)
        log.info("%d workers listening on port %d", workers, port)
        while not stopping:
            sentinels = [w.process.sentinel for w in pool if w.process is not None]
            wait(sentinels, timeout=0.5)
            for worker in pool:
                process = worker.process
                if stopping or process is None or process.is_alive():
                    continue
                lived = time.monotonic() - worker.started_at
                worker.early_deaths = worker.early_deaths + 1 if lived < 5 else 0
                pause = min(RESTART_PAUSE_MAX, 0.25 * (2 ** worker.early_deaths) - 0.25)
                log.warning("worker %d (pid %s) exited with status %s after %.1f s; "
                            "starting it again%s", worker.index, process.pid,
                            process.exitcode, lived,
                            f" in {pause:.1f} s" if pause else "")
                if pause:
                    time.sleep(pause)
                start(worker)
        log.info("stopping %d workers", workers)
        _stop_all(pool, _drain_bound(shared))
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(parent_alive_read)
        os.close(parent_alive_write)


def _wait_ready(pool: list[_Worker], stopping: list[int]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    waiting = {w.pipe: w for w in pool if w.pipe is not None}
    while waiting and not stopping and time.monotonic() < deadline:
        for pipe in wait(list(waiting), timeout=0.5):
            assert isinstance(pipe, Connection)
            worker = waiting.pop(pipe)
            try:
                message = pipe.recv()
            except EOFError:
                message = "exited before listening"
            if message != "ready":
                log.error("worker %d failed to start: %s", worker.index, message)
                return False
    return not waiting


def _drain_bound(config: Config) -> float:
    """Seconds a worker's whole drain may take: grace, paced closes, then the timeout."""
    server = config.server
    return server.drain_grace + server.drain_seconds + server.shutdown_timeout


def _stop_all(pool: list[_Worker], shutdown_timeout: float) -> None:
    for worker in pool:
        if worker.process is not None and worker.process.is_alive():
            worker.process.terminate()  # SIGTERM: the worker drains
    deadline = time.monotonic() + shutdown_timeout + 5.0
    for worker in pool:
        if worker.process is None:
            continue
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            log.warning("worker %d did not stop in time: killing it", worker.index)
            worker.process.kill()
            worker.process.join()


class _ParentWatch:
    """What a worker needs to notice its parent's death: the parent's pid and the two
    ends of the pipe only the parent writes to."""

    __slots__ = ("parent_pid", "read_fd", "write_fd")

    def __init__(self, parent_pid: int, read_fd: int, write_fd: int) -> None:
        self.parent_pid = parent_pid
        self.read_fd = read_fd
        self.write_fd = write_fd


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(sig: int) -> bool:
    """Ask the Linux kernel to send `sig` to this process when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``); whether it was set (False off Linux)."""
    if os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(read_fd: int, on_gone: Callable[[], None]) -> threading.Thread:
    """Start a daemon thread that blocks reading `read_fd` (a pipe whose writers are the
    parent only) and calls `on_gone()` once it reports end-of-file: the parent died."""
    def watch() -> None:
        while True:
            try:
                if not os.read(read_fd, 1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        on_gone()

    thread = threading.Thread(target=watch, name="pusherd-parent-watch", daemon=True)
    thread.start()
    return thread


def _parent_gone() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the worker drains; its log says why


def _worker_entry(worker_main: WorkerMain, config: Config, index: int, ready: Connection,
                  handlers: dict[int, object], parent: _ParentWatch) -> None:
    # The parent's signal handlers are not the worker's: it installs its own in its loop.
    for sig in handlers:
        signal.signal(sig, signal.SIG_DFL)
    os.close(parent.write_fd)  # the parent must be the pipe's only writer
    if not set_parent_death_signal(signal.SIGTERM):
        watch_parent(parent.read_fd, _parent_gone)
    if os.getppid() != parent.parent_pid:  # died before the kernel was asked: too late
        raise SystemExit(0)
    raise SystemExit(worker_main(config, index, ready))
