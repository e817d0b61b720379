"""pusherd.core.state: subscriptions, presence ref-counting, cache TTL (spec §8, §10, §11)."""

from __future__ import annotations

import pytest

from pusherd.core.channels import classify_channel
from pusherd.core.state import ChannelRegistry, EventCache, MemberJoin, UserRegistry
from pusherd.errors import SubscriptionRefused

PUBLIC = classify_channel("orders")
PRESENCE = classify_channel("presence-room")


def _member(user_id: str, info: object = None) -> MemberJoin:
    return MemberJoin(user_id, user_id, info)


def test_first_subscriber_occupies_a_channel_and_the_last_vacates_it() -> None:
    registry: ChannelRegistry = ChannelRegistry()
    first = registry.subscribe("orders", PUBLIC, "1.1")
    assert first.occupied and not first.already_subscribed and first.subscription_count == 1
    second = registry.subscribe("orders", PUBLIC, "2.2")
    assert not second.occupied and second.subscription_count == 2

    leave_one = registry.unsubscribe("orders", "1.1")
    assert leave_one is not None and not leave_one.vacated and leave_one.subscription_count == 1
    leave_two = registry.unsubscribe("orders", "2.2")
    assert leave_two is not None and leave_two.vacated and leave_two.subscription_count == 0
    assert registry.get("orders") is None


def test_resubscribing_the_same_socket_changes_nothing() -> None:
    registry: ChannelRegistry = ChannelRegistry()
    registry.subscribe("presence-room", PRESENCE, "1.1", _member("7"))
    again = registry.subscribe("presence-room", PRESENCE, "1.1", _member("7"))
    assert again.already_subscribed
    assert not again.occupied and again.member_added is None
    assert again.subscription_count == 1
    channel = registry.get("presence-room")
    assert channel is not None and channel.roster()["count"] == 1


def test_unsubscribing_a_socket_that_is_not_subscribed_returns_none() -> None:
    registry: ChannelRegistry = ChannelRegistry()
    assert registry.unsubscribe("orders", "1.1") is None
    registry.subscribe("orders", PUBLIC, "1.1")
    assert registry.unsubscribe("orders", "9.9") is None
    assert registry.unsubscribe("orders", "1.1") is not None
    assert registry.unsubscribe("orders", "1.1") is None


def test_one_user_on_two_sockets_is_added_once_and_removed_after_the_last_socket() -> None:
    registry: ChannelRegistry = ChannelRegistry()
    first = registry.subscribe("presence-room", PRESENCE, "1.1", _member("7", {"n": 1}))
    assert first.member_added is not None and first.member_added.user_id == "7"
    second = registry.subscribe("presence-room", PRESENCE, "2.2", _member("7", {"n": 2}))
    assert second.member_added is None

    channel = registry.get("presence-room")
    assert channel is not None
    # One distinct user; the first socket's user_info is kept (stable, §8).
    assert channel.roster() == {"ids": ["7"], "hash": {"7": {"n": 1}}, "count": 1}

    out_one = registry.unsubscribe("presence-room", "1.1")
    assert out_one is not None and out_one.member_removed is None and not out_one.vacated
    out_two = registry.unsubscribe("presence-room", "2.2")
    assert out_two is not None and out_two.member_removed is not None
    assert out_two.member_removed.user_id == "7" and out_two.vacated


def test_the_roster_lists_distinct_users_including_those_without_user_info() -> None:
    registry: ChannelRegistry = ChannelRegistry()
    registry.subscribe("presence-room", PRESENCE, "1.1", _member("7", {"name": "Ada"}))
    registry.subscribe("presence-room", PRESENCE, "2.2", _member("9"))
    registry.subscribe("presence-room", PRESENCE, "3.3", _member("9"))
    channel = registry.get("presence-room")
    assert channel is not None
    assert channel.roster() == {"ids": ["7", "9"], "hash": {"7": {"name": "Ada"}, "9": None},
                                "count": 2}


def test_a_numeric_user_id_is_kept_as_given_and_keyed_by_its_string_form() -> None:
    registry: ChannelRegistry = ChannelRegistry()
    added = registry.subscribe("presence-room", PRESENCE, "1.1", MemberJoin("42", 42, None))
    assert added.member_added is not None and added.member_added.user_id == 42
    channel = registry.get("presence-room")
    assert channel is not None and channel.roster()["ids"] == ["42"]


def test_a_new_user_beyond_the_member_limit_is_refused_and_nothing_changes() -> None:
    registry: ChannelRegistry = ChannelRegistry()
    for n in range(3):
        registry.subscribe("presence-room", PRESENCE, f"{n}.0", _member(str(n)),
                           max_members=3)
    with pytest.raises(SubscriptionRefused) as caught:
        registry.subscribe("presence-room", PRESENCE, "9.9", _member("new"), max_members=3)
    assert caught.value.channel == "presence-room"
    channel = registry.get("presence-room")
    assert channel is not None
    assert "9.9" not in channel.socket_ids and channel.roster()["count"] == 3


def test_another_socket_of_a_present_user_is_admitted_at_the_member_limit() -> None:
    registry: ChannelRegistry = ChannelRegistry()
    registry.subscribe("presence-room", PRESENCE, "1.1", _member("7"), max_members=1)
    again = registry.subscribe("presence-room", PRESENCE, "2.2", _member("7"),
                               max_members=1)
    assert not again.already_subscribed and again.subscription_count == 2


def test_occupied_channels_filter_by_prefix_and_hide_server_to_user_channels() -> None:
    registry: ChannelRegistry = ChannelRegistry()
    registry.subscribe("orders", PUBLIC, "1.1")
    registry.subscribe("presence-room", PRESENCE, "1.1", _member("7"))
    registry.subscribe("#server-to-user-7", classify_channel("#server-to-user-7"), "1.1")
    assert sorted(c.name for c in registry.occupied()) == ["orders", "presence-room"]
    assert [c.name for c in registry.occupied("presence-")] == ["presence-room"]


def test_channels_of_two_registries_never_mix() -> None:
    one: ChannelRegistry = ChannelRegistry()
    two: ChannelRegistry = ChannelRegistry()
    one.subscribe("orders", PUBLIC, "1.1")
    assert two.get("orders") is None


# --- cache (§11.1) ---------------------------------------------------------------------


def test_a_cached_event_is_returned_until_its_ttl_runs_out() -> None:
    cache = EventCache()
    cache.put("cache-prices", "update", '{"p":1}', now_ms=100_000, ttl_ms=30_000)
    hit = cache.get("cache-prices", now_ms=129_900)
    assert hit is not None and (hit.event, hit.data) == ("update", '{"p":1}')
    assert cache.get("cache-prices", now_ms=130_000) is None
    assert len(cache) == 0


def test_a_newer_event_replaces_the_cached_one() -> None:
    cache = EventCache()
    cache.put("cache-prices", "a", "1", now_ms=0, ttl_ms=30_000)
    cache.put("cache-prices", "b", "2", now_ms=1_000, ttl_ms=30_000)
    hit = cache.get("cache-prices", now_ms=2_000)
    assert hit is not None and (hit.event, hit.data) == ("b", "2")


def test_purge_drops_only_expired_entries() -> None:
    cache = EventCache()
    cache.put("cache-a", "e", "1", now_ms=0, ttl_ms=10_000)
    cache.put("cache-b", "e", "2", now_ms=0, ttl_ms=100_000)
    assert cache.purge(now_ms=50_000) == 1
    assert cache.get("cache-a", now_ms=50_000) is None
    assert cache.get("cache-b", now_ms=50_000) is not None


def test_an_unknown_cache_channel_is_a_miss() -> None:
    assert EventCache().get("cache-nothing", now_ms=0) is None


# --- users (§10) ------------------------------------------------------------------------


def test_a_user_comes_online_with_the_first_socket_and_goes_offline_with_the_last() -> None:
    users: UserRegistry = UserRegistry()
    assert users.sign_in("7", "1.1") is True
    assert users.sign_in("7", "2.2") is False
    assert users.is_online("7")
    assert users.sign_out("7", "1.1") is False
    assert users.is_online("7")
    assert users.sign_out("7", "2.2") is True
    assert not users.is_online("7")
    assert users.sign_out("7", "2.2") is False


def test_watchers_are_recorded_and_forgotten_per_socket() -> None:
    users: UserRegistry = UserRegistry()
    users.watch(["9", "12"], "1.1")
    assert users.watchers == {"9": {"1.1"}, "12": {"1.1"}}
    users.unwatch(["9", "12"], "1.1")
    assert users.watchers == {}
