"""Waiting for a condition with a bound (never a bare sleep standing in for an event)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], bound: float = 10.0,
                     what: str = "condition") -> float:
    """Return the seconds it took `condition` to hold; fail after `bound` seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > bound:
            raise AssertionError(f"{what} did not happen within {bound} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start
