"""Webhook events as data (spec §14.2), the flap guard, the body, the retry schedule.

Pure and synchronous: no clock, no randomness, no I/O (times and the jitter draw are
passed in), so every rule here is tested without an event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pusherd.core.transitions import (
    ClientEventSent,
    MemberAdded,
    MemberRemoved,
    SubscriptionCountChanged,
    Transition,
)

# Held for the grace period, and cancelled by the matching event (flap suppression).
HELD = frozenset({"channel_vacated", "member_removed"})
CANCELS = {"channel_occupied": "channel_vacated", "member_added": "member_removed"}


def webhook_event(transition: Transition) -> dict[str, Any]:
    """The §14.2 event object of `transition`, without its id.

    ``client_event`` carries ``data`` as a string (a JSON value is JSON-encoded, so every
    receiver sees what the Pusher docs show), ``socket_id``, and ``user_id`` on presence
    channels only; ``subscription_count`` carries the count as a number.
    """
    event: dict[str, Any] = {"name": transition.name, "channel": transition.channel}
    if isinstance(transition, MemberAdded | MemberRemoved):
        event["user_id"] = transition.user_id
    elif isinstance(transition, ClientEventSent):
        data = transition.data
        event["event"] = transition.event
        event["data"] = data if isinstance(data, str) else orjson.dumps(data).decode()
        event["socket_id"] = transition.socket_id
        if transition.user_id is not None:
            event["user_id"] = transition.user_id
    elif isinstance(transition, SubscriptionCountChanged):
        event["subscription_count"] = transition.subscription_count
    return event


def flap_key(event: dict[str, Any]) -> tuple[str, str | None] | None:
    """What a held removal and the addition that cancels it have in common: the channel
    (occupied/vacated) or the channel and user (added/removed); None for other events."""
    name = event["name"]
    if name in ("channel_occupied", "channel_vacated"):
        return (event["channel"], None)
    if name in ("member_added", "member_removed"):
        return (event["channel"], str(event["user_id"]))
    return None


@dataclass(slots=True)
class FlapGuard:
    """Flap suppression (§14.2): ``channel_vacated`` and ``member_removed`` wait `grace_ms`;
    the matching ``channel_occupied`` / ``member_added`` within it cancels both.

    :meth:`offer` says what to do with each event of one app; :meth:`due` releases the
    held events whose grace has passed. Keys are ``(channel, user_id or None)``.
    """

    grace_ms: int
    held: dict[tuple[str, str | None], tuple[int, str]] = field(default_factory=dict)

    def offer(self, event_id: str, event: dict[str, Any], time_ms: int
              ) -> tuple[str, str | None]:
        """What to do with one event: ``("send", None)`` now; ``("hold", None)`` until
        ``time_ms + grace_ms`` (then :meth:`due` releases `event_id`); or
        ``("cancel", held_id)``: drop this event and the held one."""
        if self.grace_ms <= 0:
            return "send", None
        key = flap_key(event)
        if key is None:
            return "send", None
        name = event["name"]
        if name in HELD:
            self.held[key] = (time_ms + self.grace_ms, event_id)
            return "hold", None
        held = self.held.pop(key, None)
        if held is not None and CANCELS.get(name):
            return "cancel", held[1]
        return "send", None

    def due(self, now_ms: int) -> list[str]:
        """The ids of the held events whose grace ended by `now_ms`, oldest first."""
        ready = [(until, event_id, key) for key, (until, event_id) in self.held.items()
                 if until <= now_ms]
        ready.sort()
        for _, _, key in ready:
            del self.held[key]
        return [event_id for _, event_id, _ in ready]

    def next_due(self) -> int | None:
        """When the earliest held event is due (wall-clock ms), or None."""
        return min((until for until, _ in self.held.values()), default=None)


def encode_webhook_body(time_ms: int, events: list[dict[str, Any]]) -> bytes:
    """The request body of §14.1: ``{"time_ms": ..., "events": [...]}`` as JSON bytes; the
    signature is computed over exactly these bytes."""
    return orjson.dumps({"time_ms": time_ms, "events": events})


def retry_delay_ms(attempts: int, base_ms: int, max_ms: int, jitter: float) -> int:
    """Milliseconds to wait after the `attempts`-th failure: ``base * 2**(attempts-1)``,
    capped at `max_ms`, scaled by ``0.5 + jitter / 2`` (`jitter` a draw in [0, 1)) so that
    the retries of many targets do not fall in step."""
    delay = min(max_ms, base_ms * 2 ** min(max(0, attempts - 1), 30))
    return max(1, int(delay * (0.5 + jitter / 2)))


@dataclass(slots=True)
class Delivery:
    """One event for one webhook target, from acceptance until delivered or dead.

    `key` identifies the target across restarts (see :func:`webhook_key`); `event` is the
    §14.2 object including its stable ``id``; times are wall-clock ms. `seq` orders
    deliveries as they were accepted.
    """

    event_id: str
    app_id: str
    key: str
    event: dict[str, Any]
    created_ms: int
    not_before_ms: int
    seq: int = 0
    attempts: int = 0
    last_error: str = ""
    failed_ms: int = 0

    @property
    def channel(self) -> str:
        """The event's channel (the unit of ordering)."""
        return str(self.event["channel"])

    def to_json(self) -> dict[str, Any]:
        """The journal form of this delivery."""
        return {"id": self.event_id, "app": self.app_id, "key": self.key,
                "event": self.event, "created_ms": self.created_ms,
                "not_before_ms": self.not_before_ms, "attempts": self.attempts,
                "last_error": self.last_error, "failed_ms": self.failed_ms}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Delivery:
        """Inverse of :meth:`to_json`; raises KeyError/TypeError on a damaged record."""
        return cls(str(raw["id"]), str(raw["app"]), str(raw["key"]), dict(raw["event"]),
                   int(raw["created_ms"]), int(raw["not_before_ms"]),
                   attempts=int(raw.get("attempts", 0)),
                   last_error=str(raw.get("last_error", "")),
                   failed_ms=int(raw.get("failed_ms", 0)))


def webhook_key(url: str, index: int) -> str:
    """A target's identity in the journal: its URL, and its position among the app's
    webhooks with the same URL (two tables may name one URL with other filters)."""
    return url if index == 0 else f"{url}#{index}"
