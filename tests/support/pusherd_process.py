"""Start a real pusherd process from this checkout, on 127.0.0.1 port 0, for tests.

Contract relied on (the `pusherd` CLI): ``python -m pusherd --config FILE --host H --port 0``
binds, then prints one line ``pusherd listening on http://H:PORT`` (``https://`` with TLS)
on stdout. The helper reads that line (no sleeping, no polling of the port) and returns
the bound port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_LISTENING = re.compile(r"pusherd listening on https?://(\[[^]\s]+\]|[^:\s]+):(\d+)")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PusherdProcess:
    """A running pusherd: its port, its process, and everything it printed so far."""

    host: str
    port: int
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    # Notified whenever a line is appended to `output`.
    output_changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for_output(self, text: str, start: int = 0, timeout: float = 10.0) -> int | None:
        """Wait until a line containing `text` is printed at index `start` or later;
        return its index, or None if none came within `timeout` seconds."""
        def found() -> int | None:
            return next((i for i in range(start, len(self.output)) if text in self.output[i]),
                        None)

        with self.output_changed:
            self.output_changed.wait_for(lambda: found() is not None, timeout)
            return found()

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and wait for the exit code (kill after `timeout`)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _pump(stream: object, sink: list[str], changed: threading.Condition) -> None:
    for line in stream:  # type: ignore[attr-defined]
        with changed:
            sink.append(line)
            changed.notify_all()


@contextmanager
def run_pusherd(
    config_toml: str,
    *,
    host: str = "127.0.0.1",
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    startup_timeout: float = 30.0,
) -> Iterator[PusherdProcess]:
    """Run pusherd with `config_toml` as its config file; stop it (SIGTERM) on exit."""
    with tempfile.TemporaryDirectory(prefix="pusherd-test-") as tmp:
        config_path = Path(tmp) / "pusherd.toml"
        config_path.write_text(config_toml)
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        for name in ("PUSHERD_HOST", "PUSHERD_PORT", "PUSHERD_APP_ID", "PUSHERD_APP_KEY",
                     "PUSHERD_APP_SECRET", "REVERB_APP_ID", "REVERB_APP_KEY",
                     "REVERB_APP_SECRET", "REVERB_SERVER_HOST", "REVERB_SERVER_PORT"):
            if env is None or name not in env:
                child_env.pop(name, None)
        process = subprocess.Popen(
            [sys.executable, "-m", "pusherd", "--config", str(config_path),
             "--host", host, "--port", "0", *extra_args],
            cwd=REPO_ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        )
        output: list[str] = []
        changed = threading.Condition()
        found: list[tuple[str, int]] = []
        ready = threading.Event()

        def read_until_listening() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                match = _LISTENING.search(line)
                if match:
                    found.append((match.group(1), int(match.group(2))))
                    ready.set()
                    break
            ready.set()
            _pump(process.stdout, output, changed)

        reader = threading.Thread(target=read_until_listening, daemon=True)
        reader.start()
        if not ready.wait(startup_timeout) or not found:
            process.kill()
            process.wait()
            raise RuntimeError("pusherd did not start:\n" + "".join(output))
        server = PusherdProcess(found[0][0], found[0][1], process, output, changed)
        try:
            yield server
        finally:
            server.stop()
