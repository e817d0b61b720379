"""The paced drain's timing: when each socket is told 4200, held to a token bucket.

Pure (no clock, no I/O, no event loop): the server's drain loop (``Server.drain``) asks
:meth:`DrainPacer.next_wake` when to wake, tells :meth:`DrainPacer.step` the time it woke
at (seconds since the drain's start), and closes as many sockets as the step returns.

Two rules decide a step. The *schedule* (:func:`drain_schedule`) is the nominal moment of
each close: batches at jittered moments spread over ``drain_seconds``. The *token bucket*
(rate :attr:`DrainPacer.rate` closes a second, at most :attr:`DrainPacer.burst` tokens
saved) caps what a step may close when the loop woke late and finds many closes overdue.
Whatever the loop's stalls, any window of one second then holds at most
``burst + rate`` closes (:attr:`DrainPacer.window_limit`): the tokens saved when the
window opens, plus one second of refill. The bucket is sized so that:

* ``window_limit`` is at most 15 % of the closes (:data:`MAX_SECOND_SHARE`) unless
  ``drain_seconds`` is too short for that: with ``count / drain_seconds`` closes a second
  due on average, the limit is ``ceil(count / drain_seconds) + burst`` when that is more;
* the nominal schedule never waits for a token (``burst`` is two batches and one), so an
  unstalled loop closes each batch at its moment;
* a loop that fell behind catches up at up to twice the nominal rate (or what the limit
  leaves, if less), so a stall of *s* seconds makes the drain at most *s* seconds longer.

A drain of at most ``batch_size`` sockets, or with ``drain_seconds`` 0, closes them all at
once: a few hundred reconnects are no storm, and 0 is the operator asking for it.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence

MAX_SECOND_SHARE = 0.15  # of a drain's closes, in any window of one second
BATCHES_PER_SECOND = 10  # the schedule's batches a second, at least
_SLACK = 1e-6  # tokens: float rounding must not cost a whole close


def drain_schedule(count: int, drain_seconds: float, batch_size: int,
                   rng: random.Random) -> list[float]:
    """Seconds after the grace at which each of `count` sockets is due its 4200, sorted.

    At most `batch_size` sockets are due at once; more are spread over `drain_seconds` in
    ``max(ceil(count / batch_size), ceil(10 * drain_seconds))`` batches, each at a random
    moment in the first 80 % of its slot (jitter), so that the surviving nodes see a
    steady trickle of reconnects, not a wave. Small drains (``count <= batch_size``) or
    ``drain_seconds <= 0``: every moment is 0.
    """
    if count <= batch_size or drain_seconds <= 0:
        return [0.0] * count
    batches = max(math.ceil(count / batch_size), math.ceil(drain_seconds * BATCHES_PER_SECOND))
    slot = drain_seconds / batches
    moments = [batch * slot + rng.random() * slot * 0.8 for batch in range(batches)]
    return [moments[index * batches // count] for index in range(count)]


def largest_window(closes: Sequence[tuple[float, int]], width: float = 1.0) -> int:
    """The most closes in any closed window of `width` seconds; `closes` is (moment in
    seconds, how many) in non-decreasing moment order."""
    most = inside = 0
    first = 0
    for moment, count in closes:
        inside += count
        while closes[first][0] < moment - width:
            inside -= closes[first][1]
            first += 1
        most = max(most, inside)
    return most


class DrainPacer:
    """Which sockets a drain closes when: :func:`drain_schedule`, held to a token bucket.

    Build it with :meth:`plan`. Times are seconds since the drain's start, fed in
    non-decreasing order (an earlier time counts as the latest one seen).
    """

    __slots__ = ("schedule", "rate", "burst", "window_limit", "_chunk", "_tokens", "_last",
                 "told")

    def __init__(self, schedule: Sequence[float], rate: float, burst: int,
                 chunk: int = 1) -> None:
        """`schedule`: sorted due moments (s); `rate`: tokens a second (> 0); `burst`:
        tokens saved at most, and at the start (>= 1); `chunk`: how many closes a wake
        waits for when it is short of tokens (a batch, so that a lagging loop wakes once
        a batch and not once a socket). Raises ValueError on a bad rate or burst."""
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate!r}, {burst!r}")
        self.schedule = list(schedule)
        self.rate = rate
        self.burst = burst
        # The most closes any closed window of one second can hold (see the module doc).
        self.window_limit = min(len(self.schedule), math.floor(burst + rate + _SLACK))
        self._chunk = max(1, chunk)
        self._tokens = float(burst)
        self._last = 0.0
        self.told = 0  # closes handed out so far

    @classmethod
    def plan(cls, count: int, drain_seconds: float, batch_size: int,
             rng: random.Random) -> DrainPacer:
        """The pacer of a drain of `count` sockets over `drain_seconds` (batches of at
        most `batch_size`), sized as the module doc says."""
        schedule = drain_schedule(count, drain_seconds, batch_size, rng)
        if count <= batch_size or drain_seconds <= 0:
            everyone = max(1, count)
            return cls(schedule, float(everyone), everyone, everyone)
        batches = max(math.ceil(count / batch_size),
                      math.ceil(drain_seconds * BATCHES_PER_SECOND))
        batch = math.ceil(count / batches)
        burst = 2 * batch + 1
        nominal = count / drain_seconds
        limit = max(math.floor(MAX_SECOND_SHARE * count), math.ceil(nominal) + burst)
        rate = min(limit - burst, 2 * nominal)
        return cls(schedule, rate, burst, batch)

    @property
    def done(self) -> bool:
        """Whether every socket has been handed out."""
        return self.told >= len(self.schedule)

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now

    def step(self, now: float) -> int:
        """How many more sockets to close at `now`: those due by then, as far as the
        tokens allow. The caller closes the next that many, in schedule order."""
        self._refill(now)
        due = bisect.bisect_right(self.schedule, self._last) - self.told
        count = min(due, math.floor(self._tokens + _SLACK))
        if count <= 0:
            return 0
        self._tokens -= count
        self.told += count
        return count

    def next_wake(self) -> float | None:
        """When a step can next close something (the next due moment, or later when the
        tokens for its batch are still to come); None once every socket is handed out."""
        if self.done:
            return None
        due_at = self.schedule[self.told]
        due_then = bisect.bisect_right(self.schedule, due_at) - self.told
        want = min(due_then, self._chunk)
        tokens_then = min(self.burst, self._tokens + max(0.0, due_at - self._last) * self.rate)
        if tokens_then + _SLACK >= want:
            return max(due_at, self._last)
        return max(due_at, self._last + (want - self._tokens) / self.rate)
