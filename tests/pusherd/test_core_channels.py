"""pusherd.core.channels: channel kinds by prefix and name validation (spec §6, §10.2)."""

from __future__ import annotations

import pytest

from pusherd.core.channels import (
    SERVER_TO_USER_PREFIX,
    channel_name_problem,
    classify_channel,
    event_name_problem,
    user_id_of_server_to_user_channel,
)

# name -> (requires_auth, presence, encrypted, cache, server_to_user, allows_client_events)
KINDS = {
    "orders": (False, False, False, False, False, False),
    "private-orders.7": (True, False, False, False, False, True),
    "private-App.Models.User.1": (True, False, False, False, False, True),
    "presence-room.1": (True, True, False, False, False, True),
    "private-encrypted-secrets": (True, False, True, False, False, False),
    "private-encrypted-cache-secrets": (True, False, True, True, False, False),
    "private-cache-prices": (True, False, False, True, False, True),
    "presence-cache-lobby": (True, True, False, True, False, True),
    "cache-prices": (False, False, False, True, False, False),
    "#server-to-user-42": (False, False, False, False, True, False),
    # Without the dash the prefix does not count (unlike Reverb).
    "privateroom": (False, False, False, False, False, False),
    "presencex": (False, False, False, False, False, False),
    "cachex": (False, False, False, False, False, False),
}


@pytest.mark.parametrize(("name", "expected"), sorted(KINDS.items()))
def test_channel_kind_follows_the_longest_matching_prefix(
    name: str, expected: tuple[bool, ...]
) -> None:
    kind = classify_channel(name)
    assert (kind.requires_auth, kind.presence, kind.encrypted, kind.cache, kind.server_to_user,
            kind.allows_client_events) == expected


@pytest.mark.parametrize(
    "name",
    ["orders", "private-App.Models.User.1", "presence-room_1", "a-b_c=d@e,f.g;h", "x" * 164,
     "#server-to-user-42", "cache-prices", "A"],
)
def test_valid_channel_names_are_accepted(name: str) -> None:
    assert channel_name_problem(name, 164) is None


@pytest.mark.parametrize(
    "name",
    ["", "has space", "slash/x", "star*", "quote\"", "unicodé", "tab\t", "new\nline",
     "x:y", "percent%20"],
)
def test_names_with_characters_outside_the_allowed_set_are_refused(name: str) -> None:
    assert channel_name_problem(name, 164) is not None


@pytest.mark.parametrize("name", [None, 5, ["a"], {"a": 1}])
def test_non_string_channel_names_are_refused(name: object) -> None:
    assert channel_name_problem(name, 164) is not None


def test_channel_names_longer_than_the_limit_are_refused() -> None:
    assert channel_name_problem("x" * 164, 164) is None
    problem = channel_name_problem("x" * 165, 164)
    assert problem is not None and "164" in problem
    assert channel_name_problem("x" * 200, 200) is None
    assert channel_name_problem("x" * 201, 200) is not None


@pytest.mark.parametrize("name", ["#", "#private-x", "#server-to-user-", "#server-to-user"])
def test_hash_names_are_reserved_except_server_to_user_channels(name: str) -> None:
    assert channel_name_problem(name, 164) is not None


def test_a_hash_in_the_middle_of_a_name_is_refused() -> None:
    assert channel_name_problem("a#b", 164) is not None


def test_the_user_id_is_read_from_a_server_to_user_channel() -> None:
    assert user_id_of_server_to_user_channel(SERVER_TO_USER_PREFIX + "user-42") == "user-42"


@pytest.mark.parametrize("name", ["pusher:subscribe", "pusher_internal:member_added"])
def test_reserved_event_names_are_refused(name: str) -> None:
    assert event_name_problem(name, 200) is not None


def test_event_names_are_limited_to_200_characters() -> None:
    assert event_name_problem("e" * 200, 200) is None
    assert event_name_problem("e" * 201, 200) is not None


@pytest.mark.parametrize("name", ["", None, 7])
def test_empty_or_non_string_event_names_are_refused(name: object) -> None:
    assert event_name_problem(name, 200) is not None


def test_laravel_event_names_with_backslashes_are_accepted() -> None:
    assert event_name_problem("App\\Events\\OrderShipped", 200) is None
