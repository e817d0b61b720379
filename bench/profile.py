"""Sampling profiles of a server under load (py-spy), summarised as file:line shares."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


class Profiler:
    """``py-spy record`` attached to `pid` until `stop()`; raw (collapsed) stacks in `path`."""

    def __init__(self, pid: int, path: Path, rate: int = 500) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.path = path
        self.process = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--nonblocking", "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

    def stop(self, timeout: float = 30.0) -> str:
        """Stop sampling, write the stacks and return a text summary ('' if none)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if not self.path.exists():
            return ""
        summary = summarise(self.path)
        self.path.with_suffix(".top.txt").write_text(summary)
        return summary


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['func']} ({file}:{match['line']})"


def _function(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", _short(frame))


def summarise(path: Path, top: int = 20) -> str:
    """Self time by file:line and inclusive time by function, as shares of all samples."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_time[_short(frames[-1])] += count
        for function in {_function(frame) for frame in frames}:
            inclusive[function] += count
    if not total:
        return ""
    lines = [f"{total} samples", "", "self time (file:line):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in self_time.most_common(top)]
    lines += ["", "inclusive time (function):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
