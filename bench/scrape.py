"""``python -m bench.scrape``: what one ``GET /metrics`` costs the event loop, by node size.

A scrape's exposition is built on the event loop that also delivers every frame, so its
time is time nothing is delivered. This script feeds pusherd's connection objects in
process, without sockets (the transport stub of :mod:`bench.instructions`): N WebSocket
connections, each subscribed to 3 public channels of its own (3 × N occupied channels),
then times ``Metrics.render()`` (the whole exposition, as ``GET /metrics`` answers it) at
each size, best and median of the repeats, in milliseconds.

``--checkout PATH,...`` measures the pusherd packages of several checkouts (e.g. an
export of an earlier commit), each in a process of its own, one after the other.

    python -m bench.scrape [--checkout /path/to/old,/path/to/new] [--sizes 1000,5000,10000]

Wall-clock figures: on a shared machine read them as ratios between checkouts measured
in the same run, and as orders of magnitude across sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
CHANNELS_PER_SOCKET = 3


def _measure(sizes: list[int], repeats: int) -> None:
    """In the child: grow one server to each size and time its scrapes (JSON on stdout)."""
    import pusherd
    from pusherd.config import load_config
    from pusherd.server.protocol import ServerProtocol
    from pusherd.server.server import Server

    # The transport stub and client frames of bench.instructions (this file's copy).
    instructions = runpy.run_path(str(Path(__file__).with_name("instructions.py")))
    transport, upgrade, text_frame = (instructions["_Transport"],
                                      instructions["_upgrade_request"],
                                      instructions["_masked_text_frame"])
    print(f"pusherd from {Path(pusherd.__file__).parents[1]}", file=sys.stderr)
    config = load_config(env={"PUSHERD_APP_ID": "1001", "PUSHERD_APP_KEY": "bench-key",
                              "PUSHERD_APP_SECRET": "bench-secret"})
    server = Server(config)
    assert server.metrics is not None, "metrics are off"
    # Stub transports hold no descriptor: the open-file limit does not apply to them.
    server.state.max_open_connections = server.state.max_transports = 10**9
    context = getattr(server, "context", server)
    sockets: list[Any] = []  # the connections stay referenced
    results = []
    for size in sorted(sizes):
        while len(sockets) < size:
            number = len(sockets)
            socket = ServerProtocol(context)  # type: ignore[arg-type]
            socket.connection_made(transport())
            socket.data_received(upgrade())
            for channel in range(CHANNELS_PER_SOCKET):
                socket.data_received(text_frame(orjson.dumps(
                    {"event": "pusher:subscribe",
                     "data": {"channel": f"room-{number}-{channel}"}})))
            sockets.append(socket)
        body = server.metrics.render()
        assert f'pusherd_connections{{app="1001"}} {size}.0'.encode() in body, body[:2000]
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            server.metrics.render()
            timings.append((time.perf_counter() - start) * 1000)
        results.append({"sockets": size, "channels": size * CHANNELS_PER_SOCKET,
                        "best_ms": min(timings), "median_ms": statistics.median(timings)})
    print(json.dumps(results))


def run(checkout: Path, sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    """The figures of `checkout`'s pusherd, measured in a child process."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    for var in ("PUSHERD_HOST", "PUSHERD_PORT", "PUSHERD_REDIS_URL", "PUSHERD_METRICS_PORT"):
        env.pop(var, None)
    child = (f"import runpy, sys; sys.path.insert(0, {str(checkout)!r}); "
             f"runpy.run_path({__file__!r})['_measure']({sizes!r}, {repeats})")
    result = subprocess.run([sys.executable, "-c", child], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0 or f"pusherd from {checkout}" not in result.stderr:
        raise SystemExit(f"{checkout} failed:\n{result.stderr[-3000:]}")
    figures: list[dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", default=str(REPO_ROOT),
                        help="comma list of checkouts whose pusherd to measure")
    parser.add_argument("--sizes", default="1000,5000,10000",
                        help="comma list of socket counts (each with 3 channels of its own)")
    parser.add_argument("--repeats", type=int, default=9, help="scrapes timed per size")
    args = parser.parse_args(argv)
    checkouts = [Path(c).resolve() for c in args.checkout.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"GET /metrics exposition (Metrics.render), ms on the event loop: best / median of "
          f"{args.repeats}; {CHANNELS_PER_SOCKET} public channels per socket")
    for checkout in checkouts:
        for row in run(checkout, sizes, args.repeats):
            print(f"  {checkout.name:<14} {row['sockets']:>7,} sockets {row['channels']:>7,} "
                  f"channels: {row['best_ms']:8.2f} / {row['median_ms']:8.2f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
