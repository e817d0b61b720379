"""Identifiers of the Pusher protocol (spec §1.3, §6.2).

``socket_id`` must match ``^\\d+\\.\\d+$``: every official server SDK checks it before
signing an auth response or excluding a socket from a trigger.
"""

from __future__ import annotations

import re
from typing import NewType

AppId = NewType("AppId", str)
AppKey = NewType("AppKey", str)
SocketId = NewType("SocketId", str)
ChannelName = NewType("ChannelName", str)
UserId = NewType("UserId", str)

# ASCII digits only: \d would also match other scripts' digits.
SOCKET_ID_PATTERN = re.compile(r"\A[0-9]+\.[0-9]+\Z")


def format_socket_id(high: int, low: int) -> SocketId:
    """Build a socket id from two non-negative integers chosen by the caller."""
    if high < 0 or low < 0:
        raise ValueError("socket id parts must be non-negative")
    return SocketId(f"{high}.{low}")


def is_valid_socket_id(value: object) -> bool:
    """Whether `value` is a string of the form ``digits.digits`` (§1.3)."""
    return isinstance(value, str) and SOCKET_ID_PATTERN.match(value) is not None
