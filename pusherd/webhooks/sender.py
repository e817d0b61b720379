"""The webhook sender: a transition listener in front, delivery lanes behind.

:meth:`WebhookSender.on_transition` runs inside the adapter's call (the hot path), so it
only builds the event, applies flap suppression and the filters, records the delivery in
the store and appends it to a lane; it never awaits and never blocks. Each lane (one per
webhook target of an app) runs as its own task: it sends the due deliveries, at most
``[webhooks] concurrency`` requests at a time, retries failures with exponential backoff
and jitter until ``retry_window`` has passed, then moves them to the dead letters.

Order: deliveries of one channel leave one request at a time, in the order they were
accepted, and a failed one holds back the later ones of its channel until it is delivered
or dead (other channels go on). Memory: at most ``max_pending`` deliveries wait (more are
dropped and counted), at most ``max_failed`` dead letters are kept, and a receiver that
hangs holds at most ``concurrency`` connections for ``timeout`` seconds each.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pusherd.config import WebhooksConfig
from pusherd.core.app import App, Webhook
from pusherd.core.auth import sign_webhook
from pusherd.core.ids import AppId
from pusherd.core.transitions import ChannelVacated, MemberRemoved, Transition
from pusherd.webhooks.client import WebhookRequestError, post_webhook
from pusherd.webhooks.events import (
    HELD,
    Delivery,
    FlapGuard,
    encode_webhook_body,
    flap_key,
    retry_delay_ms,
    webhook_event,
    webhook_key,
)
from pusherd.webhooks.store import WebhookStore

log = logging.getLogger("pusherd.webhooks")

DROP_LOG_INTERVAL_MS = 10_000
OPENS = frozenset({"channel_occupied", "member_added"})


def flap_key_of(event: dict[str, Any]) -> tuple[str, str | None]:
    """:func:`~pusherd.webhooks.events.flap_key` of an occupied/vacated/added/removed event."""
    key = flap_key(event)
    assert key is not None
    return key


def wall_ms() -> int:
    """Wall-clock milliseconds since the Unix epoch (webhook ``time_ms``)."""
    return time.time_ns() // 1_000_000


def shown_url(url: str) -> str:
    """`url` without credentials, for logs and the HTTP API."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


@dataclass(slots=True)
class WebhookCounters:
    """Counters since start, for metrics (each counted per delivery, i.e. per event and
    target): accepted, delivered, requests that failed (each retry counts), dead-lettered,
    dropped over ``max_pending``, flap pairs suppressed, replayed from the dead letters."""

    accepted: int = 0
    delivered: int = 0
    failed_requests: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    suppressed: int = 0
    replayed: int = 0


class Lane:
    """The deliveries to one webhook target of one app: a queue per channel, the channel
    heads ordered by when they are due, and the requests in flight."""

    def __init__(self, sender: WebhookSender, app_id: str, webhook: Webhook, key: str) -> None:
        self.sender = sender
        self.app_id = app_id
        self.webhook = webhook
        self.key = key
        self.queues: dict[str, deque[Delivery]] = {}
        self._heap: list[tuple[int, int, str]] = []  # (due ms, stamp, channel)
        self._ready: dict[str, int] = {}  # channel -> stamp of its live heap entry
        self._stamp = 0
        self.busy: set[str] = set()  # channels with a request in flight
        self.in_flight = 0
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.requests: set[asyncio.Task[None]] = set()

    # --- queueing -----------------------------------------------------------------------

    def push(self, delivery: Delivery) -> None:
        """Append `delivery` to its channel's queue; wake the lane if it is a new head."""
        channel = delivery.channel
        queue = self.queues.get(channel)
        if queue is None:
            queue = self.queues[channel] = deque()
        queue.append(delivery)
        if len(queue) == 1 and channel not in self.busy:
            self._schedule(channel, delivery.not_before_ms)
            self.wake.set()

    def _schedule(self, channel: str, due_ms: int) -> None:
        self._stamp += 1
        self._ready[channel] = self._stamp
        heapq.heappush(self._heap, (due_ms, self._stamp, channel))

    def _peek(self) -> tuple[int, int, str] | None:
        heap = self._heap
        while heap and self._ready.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)  # superseded entry
        return heap[0] if heap else None

    # --- sending ------------------------------------------------------------------------

    async def run(self) -> None:
        """Send what is due, then sleep until the next head is due or a push wakes us."""
        while True:
            self.wake.clear()
            wait_ms = self.dispatch(wall_ms())
            if wait_ms is None:
                await self.wake.wait()
            else:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that coincides with the wake-up, and the lane would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_ms / 1000):
                        await self.wake.wait()

    def dispatch(self, now_ms: int) -> int | None:
        """Start the requests that are due at `now_ms`; return ms until the next is due, or
        None to wait for a push or a finished request."""
        config = self.sender.config
        window_ms = int(config.batch_window * 1000)
        batch_max = config.batch_max if window_ms else 1
        while self.in_flight < config.concurrency:
            head = self._peek()
            if head is None:
                return None
            if head[0] + window_ms > now_ms:
                return head[0] + window_ms - now_ms
            batch: list[Delivery] = []
            while len(batch) < batch_max:
                head = self._peek()
                if head is None or head[0] > now_ms:
                    break
                heapq.heappop(self._heap)
                channel = head[2]
                del self._ready[channel]
                self.busy.add(channel)
                for delivery in self.queues[channel]:
                    if len(batch) >= batch_max:
                        break
                    batch.append(delivery)
            batch.sort(key=lambda d: d.seq)
            self.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self.requests.add(task)
            task.add_done_callback(self.requests.discard)
        return None

    async def _send(self, batch: list[Delivery]) -> None:
        sender = self.sender
        app = sender.apps.get(self.app_id)
        error = ""
        if app is None:  # pragma: no cover - lanes exist only for configured apps
            error = "unknown app"
        else:
            body = encode_webhook_body(wall_ms(), [d.event for d in batch])
            headers = [("Content-Type", "application/json"), ("X-Pusher-Key", app.key),
                       ("X-Pusher-Signature", sign_webhook(app.secret, body))]
            try:
                status = await post_webhook(self.webhook.url, headers, body,
                                            sender.config.timeout)
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except TimeoutError:
                error = f"no answer within {sender.config.timeout:g} s"
            except (OSError, WebhookRequestError) as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # never let one request kill the lane
                log.exception("webhook request to %s failed", shown_url(self.webhook.url))
                error = type(exc).__name__
        self.in_flight -= 1
        self.finish(batch, error, wall_ms())

    def finish(self, batch: list[Delivery], error: str, now_ms: int) -> None:
        """Account for a request's outcome (`error` empty: delivered) at `now_ms`."""
        sender = self.sender
        by_channel: dict[str, int] = {}
        for delivery in batch:
            by_channel[delivery.channel] = by_channel.get(delivery.channel, 0) + 1
        if error:
            sender.counters.failed_requests += 1
            attempts = max(d.attempts for d in batch) + 1
            delay = retry_delay_ms(attempts, int(sender.config.retry_base * 1000),
                                   int(sender.config.retry_max * 1000), sender.random())
        window_ms = int(sender.config.retry_window * 1000)
        for channel, count in by_channel.items():
            queue = self.queues[channel]
            taken = [queue.popleft() for _ in range(count)]
            kept: list[Delivery] = []
            for delivery in taken:
                if not error:
                    sender.delivered(delivery)
                    continue
                delivery.attempts += 1
                delivery.last_error = error
                deadline = delivery.created_ms + window_ms
                if now_ms >= deadline:
                    sender.dead_letter(delivery, self.webhook, now_ms)
                else:
                    delivery.not_before_ms = min(now_ms + delay, deadline)
                    kept.append(delivery)
                    sender.notify("retry", delivery)
            queue.extendleft(reversed(kept))
            self.busy.discard(channel)
            if queue:
                self._schedule(channel, queue[0].not_before_ms)
            else:
                del self.queues[channel]
        self.wake.set()


class WebhookSender:
    """Delivers every app's webhooks (spec §14); feed it with :meth:`on_transition`.

    Lifecycle: :meth:`start` (recover the store, start the lanes), then transitions, then
    :meth:`close` (stop the lanes; what is pending stays in the store for the next start).
    """

    def __init__(self, apps: Iterable[App], config: WebhooksConfig, store: WebhookStore,
                 random_source: Callable[[], float] = random.random) -> None:
        self.config = config
        self.store = store
        self.random = random_source
        self.counters = WebhookCounters()
        self.apps: dict[str, App] = {}
        self._targets: dict[str, list[Lane]] = {}
        self._lanes: dict[tuple[str, str], Lane] = {}
        self._guards: dict[str, FlapGuard] = {}
        self._held: dict[str, list[Delivery]] = {}
        self._held_timers: dict[str, asyncio.TimerHandle] = {}
        self._failed: OrderedDict[tuple[str, str], Delivery] = OrderedDict()
        self._pending = 0
        self._seq = 0
        self._node = secrets.token_hex(6)
        self._counter = 0
        self._last_drop_log = -DROP_LOG_INTERVAL_MS
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observers: list[Callable[[str, Delivery], None]] = []
        self._maintainer: asyncio.Task[None] | None = None
        self._closing = False
        # Set by the server on a cluster: whether (app, channel, user id or None) is
        # occupied / present now on any node.
        self.still_open: Callable[[str, str, str | None], Awaitable[bool]] | None = None
        self._releases: asyncio.Queue[str] | None = None
        self._releaser: asyncio.Task[None] | None = None
        for app in apps:
            if not app.webhooks:
                continue
            self.apps[app.id] = app
            self._guards[app.id] = FlapGuard(int(config.grace * 1000))
            lanes = []
            for index, webhook in enumerate(app.webhooks):
                same_url = sum(1 for w in app.webhooks[:index] if w.url == webhook.url)
                key = webhook_key(webhook.url, same_url)
                lane = Lane(self, app.id, webhook, key)
                self._lanes[(app.id, key)] = lane
                lanes.append(lane)
            self._targets[app.id] = lanes

    def add_observer(self, observer: Callable[[str, Delivery], None]) -> None:
        """Call `observer(outcome, delivery)` after each outcome: ``"delivered"``,
        ``"retry"`` (a request failed; it will be retried) or ``"dead"`` (for metrics, and
        for tests that wait for an outcome). It must not block or raise."""
        self._observers.append(observer)

    def notify(self, outcome: str, delivery: Delivery) -> None:
        """Tell the observers about one delivery's `outcome`."""
        for observer in self._observers:
            try:
                observer(outcome, delivery)
            except Exception:
                log.exception("webhook observer failed")

    # --- gauges -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Deliveries accepted and not yet delivered or dead (held ones included)."""
        return self._pending

    @property
    def failed_count(self) -> int:
        """Dead letters currently kept."""
        return len(self._failed)

    @property
    def in_flight(self) -> int:
        """Requests currently in flight, over every target."""
        return sum(lane.in_flight for lane in self._lanes.values())

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, queue what it recovered, start one task per target."""
        self._loop = asyncio.get_running_loop()
        if self.still_open is not None:
            self._releases = asyncio.Queue()
            self._releaser = self._loop.create_task(self._release_forever(),
                                                    name="pusherd-webhook-release")
        recovered = await self.store.open()
        now_ms = wall_ms()
        unknown = self._adopt(recovered.pending, now_ms)
        shared = self.store.reclaim_interval > 0  # other nodes' dead letters are theirs
        for delivery in recovered.failed:
            if (delivery.app_id, delivery.key) in self._lanes:
                self._failed[(delivery.event_id, delivery.key)] = delivery
            elif not shared:
                unknown += 1
                self.store.delivered(delivery)
        if unknown:
            log.warning("webhooks: %d stored event(s) of webhooks no longer configured "
                        "were discarded", unknown)
        if recovered.pending or recovered.failed:
            log.info("webhooks: recovered %d pending event(s) and %d dead letter(s)",
                     len(recovered.pending), len(recovered.failed))
        for lane in self._lanes.values():
            lane.task = self._loop.create_task(lane.run(), name=f"pusherd-webhook-{lane.key}")
        self._close_left_open(recovered.open, now_ms)
        if self.store.reclaim_interval > 0:
            self._maintainer = self._loop.create_task(self._maintain_forever(),
                                                      name="pusherd-webhook-reclaim")

    def _adopt(self, deliveries: list[Delivery], now_ms: int) -> int:
        """Queue deliveries accepted earlier (by a previous process, or a dead node);
        removals still within their grace are held again. Returns how many belong to no
        configured webhook (they are dropped)."""
        unknown = 0
        for delivery in deliveries:
            lane = self._lanes.get((delivery.app_id, delivery.key))
            if lane is None:
                unknown += 1
                self.store.delivered(delivery)
                continue
            self._seq += 1
            delivery.seq = self._seq
            self._pending += 1
            key = flap_key(delivery.event)
            if delivery.event["name"] in HELD and delivery.not_before_ms > now_ms \
                    and key is not None:
                self._guards[delivery.app_id].held[key] = (delivery.not_before_ms,
                                                           delivery.event_id)
                self._hold(delivery.event_id, [delivery], delivery.not_before_ms - now_ms)
            else:
                lane.push(delivery)
        return unknown

    async def _maintain_forever(self) -> None:
        """A cluster store: take over dead nodes' deliveries, refresh the dead letters."""
        while not self._closing:
            await asyncio.sleep(self.store.reclaim_interval)
            try:
                taken = await self.store.reclaim()
                self._adopt(taken, wall_ms())
                failed = await self.store.load_failed()
            except Exception as exc:
                log.warning("webhooks: store maintenance failed (%s)", type(exc).__name__)
                continue
            if failed is not None:
                self._failed = OrderedDict(
                    ((d.event_id, d.key), d) for d in failed
                    if (d.app_id, d.key) in self._lanes)

    def _close_left_open(self, left_open: list[tuple[str, str, str | None]],
                         now_ms: int) -> None:
        """The previous process stopped without announcing these removals (it was killed):
        this one holds no subscriber, so each channel is vacated and each member removed
        now, members first, through flap suppression (a client that reconnects within the
        grace sends nothing)."""
        if not left_open:
            return
        log.info("webhooks: %d channel(s) and member(s) left open by the previous process "
                 "are closed", len(left_open))
        for app_id, channel, user_id in sorted(left_open, key=lambda k: k[2] is None):
            if app_id not in self.apps:
                continue
            if user_id is None:
                self.on_transition(ChannelVacated(AppId(app_id), channel, now_ms))
            else:
                self.on_transition(MemberRemoved(AppId(app_id), channel, user_id, now_ms))

    async def close(self) -> None:
        """Stop sending; deliveries not yet answered stay in the store (at-least-once)."""
        tasks: list[asyncio.Task[None]] = []
        for extra in (self._maintainer, self._releaser):
            if extra is not None:
                tasks.append(extra)
        for lane in self._lanes.values():
            if lane.task is not None:
                tasks.append(lane.task)
            tasks.extend(lane.requests)
        self._closing = True
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a client library that swallows a cancellation must not hang the stop.
            await asyncio.wait(tasks, timeout=5)
        for timer in self._held_timers.values():
            timer.cancel()
        await self.store.close()

    # --- the listener (hot path: no await, no I/O wait) ---------------------------------

    def on_transition(self, transition: Transition) -> None:
        """The adapter's listener: accept the webhook event `transition` implies."""
        lanes = self._targets.get(transition.app_id)
        if lanes is None or self._loop is None:
            return
        event = webhook_event(transition)
        name = event["name"]
        if name in OPENS:
            self.store.opened((transition.app_id, *flap_key_of(event)))
        elif name in HELD:
            self.store.closed((transition.app_id, *flap_key_of(event)))
        self._counter += 1
        event_id = f"{self._node}-{self._counter}"
        decision, cancelled = self._guards[transition.app_id].offer(
            event_id, event, transition.time_ms)
        if decision == "cancel":
            self.counters.suppressed += 1
            timer = self._held_timers.pop(cancelled or "", None)
            if timer is not None:
                timer.cancel()
            for delivery in self._held.pop(cancelled or "", ()):
                self._pending -= 1
                self.store.delivered(delivery)
            return
        channel = event["channel"]
        targets = [lane for lane in lanes if lane.webhook.accepts(name, channel)]
        held = decision == "hold"
        if targets and self._pending + len(targets) > self.config.max_pending:
            self._drop(len(targets), transition.time_ms)
            targets = []
        grace_ms = int(self.config.grace * 1000) if held else 0
        until = transition.time_ms + grace_ms
        event["id"] = event_id
        deliveries = []
        for lane in targets:
            self._seq += 1
            delivery = Delivery(event_id, lane.app_id, lane.key, event, until, until,
                                seq=self._seq)
            self.store.add(delivery)
            deliveries.append(delivery)
        self._pending += len(deliveries)
        self.counters.accepted += len(deliveries)
        if held:
            # Held even when no target wants it: the matching addition is still cancelled.
            self._hold(event_id, deliveries, int(self.config.grace * 1000))
            return
        for delivery, lane in zip(deliveries, targets, strict=True):
            lane.push(delivery)

    def _hold(self, event_id: str, deliveries: list[Delivery], delay_ms: int) -> None:
        assert self._loop is not None
        if event_id in self._held:  # recovered: one more target of the same event
            self._held[event_id].extend(deliveries)
            return
        self._held[event_id] = deliveries
        self._held_timers[event_id] = self._loop.call_later(
            max(0, delay_ms) / 1000, self._release, event_id)

    def _release(self, event_id: str) -> None:
        """The grace of a held removal ended: it goes out (on a cluster, after asking
        whether the channel or member is back on another node)."""
        self._held_timers.pop(event_id, None)
        if self._releases is not None:
            self._releases.put_nowait(event_id)
            return
        self._send_held(event_id, back=False)

    def _send_held(self, event_id: str, back: bool) -> None:
        """Queue a held removal, or drop it when the channel or member is `back`."""
        deliveries = self._held.pop(event_id, [])
        for guard in self._guards.values():
            for key, (_, held_id) in list(guard.held.items()):
                if held_id == event_id:
                    del guard.held[key]
        if back and deliveries:
            self.counters.suppressed += 1
        for delivery in deliveries:
            if back:
                self._pending -= 1
                self.store.delivered(delivery)
            else:
                self._lanes[(delivery.app_id, delivery.key)].push(delivery)

    async def _release_forever(self) -> None:
        """On a cluster, a reload may reconnect to another node: that node announces the
        addition, so the held removal is sent only if the channel or member is still gone
        cluster-wide when its grace ends. One at a time, so releases keep their order."""
        assert self._releases is not None and self.still_open is not None
        while not self._closing:
            event_id = await self._releases.get()
            deliveries = self._held.get(event_id)
            if not deliveries:
                self._send_held(event_id, back=False)
                continue
            first = deliveries[0]
            key = flap_key(first.event)
            back = False
            if key is not None:
                try:
                    back = await self.still_open(first.app_id, key[0], key[1])
                except Exception as exc:  # unknown: send (at worst a removal too many)
                    log.warning("webhooks: cannot ask the cluster whether %s is back (%s)",
                                first.channel, type(exc).__name__)
            self._send_held(event_id, back)

    def _drop(self, count: int, now_ms: int) -> None:
        self.counters.dropped += count
        if now_ms - self._last_drop_log >= DROP_LOG_INTERVAL_MS:
            self._last_drop_log = now_ms
            log.warning("webhooks: %d event(s) awaiting delivery (max_pending); new events are "
                        "dropped (%d so far)", self._pending, self.counters.dropped)

    # --- outcomes -----------------------------------------------------------------------

    def delivered(self, delivery: Delivery) -> None:
        """A lane's request for `delivery` was answered 2xx."""
        self._pending -= 1
        self.counters.delivered += 1
        self.store.delivered(delivery)
        self.notify("delivered", delivery)

    def dead_letter(self, delivery: Delivery, webhook: Webhook, now_ms: int) -> None:
        """`delivery` failed for the whole retry window: keep it for the HTTP API."""
        self._pending -= 1
        self.counters.dead_lettered += 1
        delivery.failed_ms = now_ms
        self._failed[(delivery.event_id, delivery.key)] = delivery
        self.store.failed(delivery)
        log.warning("webhook to %s of app %s: event %s (%s on %s) failed %d time(s) over "
                    "%g s and is kept as a dead letter: %s", shown_url(webhook.url),
                    delivery.app_id, delivery.event_id, delivery.event["name"],
                    delivery.channel, delivery.attempts, self.config.retry_window,
                    delivery.last_error)
        self.notify("dead", delivery)
        while len(self._failed) > self.config.max_failed:
            _, oldest = self._failed.popitem(last=False)
            self.store.delivered(oldest)
            log.warning("webhooks: dead letter %s forgotten (max_failed=%d)",
                        oldest.event_id, self.config.max_failed)

    # --- dead letters (HTTP API) --------------------------------------------------------

    def failed_events(self, app_id: str) -> list[dict[str, Any]]:
        """The dead letters of `app_id`, oldest first, as the HTTP API lists them."""
        result = []
        for delivery in self._failed.values():
            if delivery.app_id != app_id:
                continue
            lane = self._lanes[(delivery.app_id, delivery.key)]
            result.append({"id": delivery.event_id, "url": shown_url(lane.webhook.url),
                           "event": delivery.event, "attempts": delivery.attempts,
                           "last_error": delivery.last_error,
                           "failed_at_ms": delivery.failed_ms})
        return result

    def replay(self, app_id: str, event_ids: Iterable[str] | None) -> int:
        """Queue again the dead letters of `app_id` (those in `event_ids`, or all), with
        their ids and a fresh retry window; return how many."""
        wanted = None if event_ids is None else set(event_ids)
        now_ms = wall_ms()
        chosen = [key for key, d in self._failed.items()
                  if d.app_id == app_id and (wanted is None or d.event_id in wanted)]
        for key in chosen:
            delivery = self._failed.pop(key)
            delivery.attempts = 0
            delivery.last_error = ""
            delivery.failed_ms = 0
            delivery.created_ms = delivery.not_before_ms = now_ms
            self._seq += 1
            delivery.seq = self._seq
            self._pending += 1
            self.store.replayed(delivery)
            self._lanes[(delivery.app_id, delivery.key)].push(delivery)
        self.counters.replayed += len(chosen)
        if chosen:
            log.info("webhooks: %d dead letter(s) of app %s replayed", len(chosen), app_id)
        return len(chosen)
