"""pusherd.core.ids: socket ids that every official SDK accepts (spec §1.3)."""

from __future__ import annotations

import re

import pytest

from pusherd.core.ids import format_socket_id, is_valid_socket_id

# The check every official server SDK applies before signing or excluding a socket.
SDK_PATTERN = re.compile(r"\A\d+\.\d+\Z")


@pytest.mark.parametrize(("high", "low"), [(0, 0), (1, 2), (9_999_999_999, 1), (12345, 678)])
def test_formatted_socket_ids_match_the_sdk_pattern(high: int, low: int) -> None:
    socket_id = format_socket_id(high, low)
    assert socket_id == f"{high}.{low}"
    assert SDK_PATTERN.match(socket_id)
    assert is_valid_socket_id(socket_id)


def test_negative_parts_are_refused() -> None:
    with pytest.raises(ValueError):
        format_socket_id(-1, 2)
    with pytest.raises(ValueError):
        format_socket_id(1, -2)


@pytest.mark.parametrize(
    "value",
    ["", "1", "1.", ".1", "1.2.3", "a.b", "1.2\n", " 1.2", "1,2", "-1.2", "1.-2", "١.٢",
     None, 1.2, 12, ["1.2"]],
)
def test_anything_else_is_not_a_socket_id(value: object) -> None:
    assert not is_valid_socket_id(value)
