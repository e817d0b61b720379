"""``python -m bench.webhooks``: fan-out latency with and without a webhook receiver that
hangs, in one run (docs/webhooks.md).

The same pusherd runs the same fan-out scenario (N subscribers on one channel, paced
triggers, latency measured by the load workers) twice per round: once with no webhook,
once posting every event to a receiver that sleeps 10 s before answering each request.
During both, a churn of subscribe/unsubscribe on other channels makes a steady stream of
webhook events (occupied and vacated, with flap suppression off), so the sender is busy
the whole time. Rounds alternate the order. Prints one line per measurement and writes
bench/results/<time>-webhooks.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import websockets

from bench.load import rss_bytes
from bench.scenarios import Sizes, scenario_fanout
from bench.servers import RunningServer, start_server

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class SleepingReceiver:
    """An HTTP receiver that answers every request 200 after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            self.requests += 1
            await asyncio.sleep(self.delay)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def churn(port: int, key: str, rate: float, stop: asyncio.Event) -> int:
    """Subscribe to and leave fresh channels at `rate` per second until `stop`."""
    cycles = 0
    async with websockets.connect(f"ws://127.0.0.1:{port}/app/{key}?protocol=7",
                                  max_queue=None) as ws:
        await ws.recv()
        t0 = time.monotonic()
        while not stop.is_set():
            channel = f"churn-{cycles}"
            await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
            await ws.send(json.dumps({"event": "pusher:unsubscribe",
                                      "data": {"channel": channel}}))
            cycles += 1
            delay = t0 + cycles / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
    return cycles


async def measure(server: RunningServer, sizes: Sizes, churn_rate: float) -> dict[str, Any]:
    stop = asyncio.Event()
    churner = asyncio.create_task(churn(server.port, server.credentials.key, churn_rate, stop))
    rss0 = rss_bytes(server.pid) if server.pid else 0
    try:
        result = await scenario_fanout(server, sizes, None)
    finally:
        stop.set()
        cycles = await churner
    result["churn_cycles"] = cycles
    result["rss_growth_mb"] = round(((rss_bytes(server.pid) if server.pid else 0) - rss0)
                                    / 2**20, 2)
    return result


async def main_async(args: argparse.Namespace) -> int:
    receiver = SleepingReceiver(args.receiver_delay)
    await receiver.start()
    hook = (f'\n[[apps.webhooks]]\nurl = "http://127.0.0.1:{receiver.port}/hook"\n'
            f'\n[webhooks]\njournal = ""\ngrace = 0\ntimeout = {args.receiver_delay + 5}\n'
            f'max_pending = {args.max_pending}\n')
    sizes = dataclasses.replace(Sizes.smoke(), fanout_conns=args.conns,
                                fanout_interval=args.interval, fanout_duration=args.duration)
    variants = {"no-webhook": "", "hanging-webhook": hook}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    try:
        for round_index in range(args.rounds):
            order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
            for name in order:
                server = await asyncio.to_thread(start_server, "pusherd",
                                                 config_extra=variants[name])
                try:
                    result = await measure(server, sizes, args.churn)
                finally:
                    await asyncio.to_thread(server.stop)
                runs[name].append(result)
                print(f"round {round_index + 1} {name:16s} p50={result['p50_ms']} "
                      f"p99={result['p99_ms']} ms loss={result['loss']} "
                      f"churn={result['churn_cycles']} rss_growth={result['rss_growth_mb']} MB",
                      flush=True)
    finally:
        await receiver.stop()
    summary = {name: {key: statistics.median(r[key] for r in rs if r.get(key) is not None)
                      for key in ("p50_ms", "p95_ms", "p99_ms", "loss", "churn_cycles",
                                  "rss_growth_mb")}
               for name, rs in runs.items()}
    for name, figures in summary.items():
        print(f"median {name:16s} " + " ".join(f"{k}={v}" for k, v in figures.items()))
    print(f"receiver got {receiver.requests} request(s), each held {args.receiver_delay:g} s")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-webhooks.json"
    out.write_text(json.dumps({"args": vars(args), "runs": runs, "summary": summary,
                               "receiver_requests": receiver.requests}, indent=1))
    print(f"wrote {out}")
    return 0


async def listener_cost(count: int) -> int:
    """Microseconds per transition spent in the webhook listener (the only webhook work on
    the delivery path), with the journal store and with the memory store."""
    import tempfile

    from pusherd.config import WebhooksConfig
    from pusherd.core.app import App, Webhook
    from pusherd.core.ids import AppId, AppKey
    from pusherd.core.transitions import ChannelOccupied
    from pusherd.webhooks.sender import WebhookSender
    from pusherd.webhooks.store import JournalStore, MemoryStore, WebhookStore

    app = App(AppId("1"), AppKey("k"), "s", webhooks=(Webhook("http://127.0.0.1:9/h"),))
    with tempfile.TemporaryDirectory() as tmp:
        stores: dict[str, WebhookStore] = {"journal": JournalStore(f"{tmp}/j"),
                                           "memory": MemoryStore()}
        for name, store in stores.items():
            config = WebhooksConfig(journal="", grace=0, max_pending=count + 1)
            sender = WebhookSender([app], config, store)
            await sender.start()
            for lane in sender._lanes.values():  # measure the listener alone: no sending
                assert lane.task is not None
                lane.task.cancel()
            now = int(time.time() * 1000)
            # Batches of 1,000, the lanes emptied between them as deliveries would empty
            # them: the steady state, not a backlog growing in memory.
            elapsed = 0.0
            for batch in range(count // 1000):
                transitions = [ChannelOccupied(AppId("1"), f"c-{batch}-{i}", now)
                               for i in range(1000)]
                t0 = time.perf_counter()
                for transition in transitions:
                    sender.on_transition(transition)
                elapsed += time.perf_counter() - t0
                for lane in sender._lanes.values():
                    lane.queues.clear()
                    lane._heap.clear()
                    lane._ready.clear()
                sender._pending = 0
                await asyncio.sleep(0)  # the journal writes its buffer (not counted)
            print(f"listener with the {name} store: {elapsed / count * 1e6:.2f} us per "
                  f"transition ({count} transitions)")
            await sender.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--conns", type=int, default=2000, help="fan-out subscribers")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between triggers")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of triggers")
    parser.add_argument("--churn", type=float, default=100.0,
                        help="subscribe+unsubscribe cycles per second (2 webhook events each)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--receiver-delay", type=float, default=10.0)
    parser.add_argument("--max-pending", type=int, default=100_000)
    parser.add_argument("--listener-only", type=int, metavar="N", default=0,
                        help="instead: time N calls of the webhook listener in-process")
    args = parser.parse_args()
    if args.listener_only:
        return asyncio.run(listener_cost(args.listener_only))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
