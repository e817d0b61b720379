"""pusherd.core.session: subscription auth, sign-in, client-event rules, keepalive.

Signatures are computed here with :mod:`hmac` directly (not with pusherd's own signer), so
these tests check pusherd against the protocol, not against itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from typing import Any

import pytest

from pusherd.apps import App
from pusherd.core.channels import classify_channel
from pusherd.core.ids import AppId, AppKey
from pusherd.core.messages import ClientEvent, Signin, Subscribe
from pusherd.core.session import KeepaliveAction, Session
from pusherd.errors import ClientEventRejected, SigninRefused, SubscriptionRefused

KEY = "app-key"
SECRET = "app-secret"
SOCKET = "123.456"
OTHER_SOCKET = "789.12"


def _app(**changes: Any) -> App:
    app = App(id=AppId("1001"), key=AppKey(KEY), secret=SECRET, enable_client_events=True)
    return dataclasses.replace(app, **changes)


def _session(app: App | None = None, now: float = 0.0) -> Session:
    return Session(SOCKET, app or _app(), now)


def _hmac(text: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def _channel_auth(channel: str, channel_data: str | None = None, socket_id: str = SOCKET,
                  secret: str = SECRET, key: str = KEY) -> str:
    text = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
    return f"{key}:{_hmac(text, secret)}"


def _user_auth(user_data: str, socket_id: str = SOCKET, secret: str = SECRET) -> str:
    return f"{KEY}:{_hmac(f'{socket_id}::user::{user_data}', secret)}"


def _refusal(session: Session, message: Subscribe) -> SubscriptionRefused:
    with pytest.raises(SubscriptionRefused) as caught:
        session.authorize_subscribe(message)
    refusal = caught.value
    assert refusal.channel == message.channel
    frame = json.loads(refusal.to_frame())
    assert frame["event"] == "pusher:error" and frame["data"]["message"]
    return refusal


# --- subscriptions (§7.4) ---------------------------------------------------------------


@pytest.mark.parametrize("channel", ["orders", "cache-prices"])
def test_public_channels_need_no_auth(channel: str) -> None:
    grant = _session().authorize_subscribe(Subscribe(channel, "", None))
    assert grant.channel == channel and grant.member is None


@pytest.mark.parametrize("channel", ["private-orders", "private-encrypted-x",
                                     "private-cache-x", "private-encrypted-cache-x"])
def test_private_family_channels_accept_a_valid_signature(channel: str) -> None:
    grant = _session().authorize_subscribe(Subscribe(channel, _channel_auth(channel), None))
    assert grant.kind == classify_channel(channel) and grant.member is None


def test_a_forged_private_signature_is_refused_without_leaking_the_expected_digest() -> None:
    forged = _channel_auth("private-orders", secret="guessed-secret")
    refusal = _refusal(_session(), Subscribe("private-orders", forged, None))
    assert refusal.code == 4009
    expected = _channel_auth("private-orders").split(":", 1)[1]
    assert expected not in refusal.message and SECRET not in refusal.message


def test_another_sockets_signature_is_refused() -> None:
    token = _channel_auth("private-orders", socket_id=OTHER_SOCKET)
    _refusal(_session(), Subscribe("private-orders", token, None))


def test_another_channels_signature_is_refused() -> None:
    token = _channel_auth("private-other")
    _refusal(_session(), Subscribe("private-orders", token, None))


@pytest.mark.parametrize("token", [None, ""])
def test_a_private_subscribe_without_auth_is_refused(token: str | None) -> None:
    _refusal(_session(), Subscribe("private-orders", token, None))


def test_a_signature_with_the_wrong_key_prefix_is_refused() -> None:
    token = _channel_auth("private-orders", key="other-key")
    _refusal(_session(), Subscribe("private-orders", token, None))


@pytest.mark.parametrize("channel", ["bad name", "#private", "x" * 165, "#server-to-user-"])
def test_invalid_channel_names_are_refused(channel: str) -> None:
    _refusal(_session(), Subscribe(channel, "", None))


def test_presence_subscribe_yields_the_member_from_channel_data() -> None:
    channel_data = '{"user_id":"42","user_info":{"name":"Ada"}}'
    grant = _session().authorize_subscribe(
        Subscribe("presence-room", _channel_auth("presence-room", channel_data), channel_data))
    assert grant.member is not None
    assert (grant.member.key, grant.member.user_id, grant.member.user_info) == (
        "42", "42", {"name": "Ada"})


def test_presence_channel_data_altered_after_signing_is_refused() -> None:
    signed = '{"user_id":"42","user_info":{"name":"Ada"}}'
    altered = '{"user_id":"1","user_info":{"name":"Ada"}}'
    _refusal(_session(), Subscribe("presence-room", _channel_auth("presence-room", signed),
                                   altered))


def test_presence_channel_data_is_verified_byte_for_byte_with_php_escapes() -> None:
    channel_data = '{"user_id":"42","user_info":{"url":"https:\\/\\/x.test\\/a"}}'
    grant = _session().authorize_subscribe(
        Subscribe("presence-room", _channel_auth("presence-room", channel_data), channel_data))
    assert grant.member is not None
    assert grant.member.user_info == {"url": "https://x.test/a"}


def test_a_numeric_user_id_is_accepted_and_kept_as_a_number() -> None:
    channel_data = '{"user_id":42}'
    grant = _session().authorize_subscribe(
        Subscribe("presence-room", _channel_auth("presence-room", channel_data), channel_data))
    assert grant.member is not None
    assert grant.member.key == "42" and grant.member.user_id == 42


def test_a_member_without_user_info_is_kept_with_null_info() -> None:
    channel_data = '{"user_id":"42"}'
    grant = _session().authorize_subscribe(
        Subscribe("presence-room", _channel_auth("presence-room", channel_data), channel_data))
    assert grant.member is not None and grant.member.user_info is None


@pytest.mark.parametrize(
    "channel_data",
    ['{"user_info":{}}', "[]", "not json", '{"user_id":""}', '{"user_id":true}',
     '{"user_id":null}', '{"user_id":{"a":1}}'],
)
def test_presence_channel_data_without_a_usable_user_id_is_refused(channel_data: str) -> None:
    _refusal(_session(), Subscribe("presence-room", _channel_auth("presence-room", channel_data),
                                   channel_data))


def test_a_presence_user_id_longer_than_128_characters_is_refused() -> None:
    channel_data = json.dumps({"user_id": "u" * 129})
    _refusal(_session(), Subscribe("presence-room", _channel_auth("presence-room", channel_data),
                                   channel_data))


def test_user_info_larger_than_the_limit_is_refused() -> None:
    app = _app(max_presence_user_info_size=64)
    small = json.dumps({"user_id": "1", "user_info": {"n": "x" * 40}})
    _session(app).authorize_subscribe(
        Subscribe("presence-room", _channel_auth("presence-room", small), small))
    big = json.dumps({"user_id": "1", "user_info": {"n": "x" * 100}})
    _refusal(_session(app), Subscribe("presence-room", _channel_auth("presence-room", big), big))


def test_presence_without_channel_data_is_refused_for_a_socket_not_signed_in() -> None:
    _refusal(_session(), Subscribe("presence-room", _channel_auth("presence-room"), None))


def test_a_signed_in_socket_joins_presence_with_the_short_signature() -> None:
    session = _session()
    user_data = '{"id":"7","user_info":{"name":"Ada"}}'
    session.user = session.authorize_signin(Signin(_user_auth(user_data), user_data))
    grant = session.authorize_subscribe(
        Subscribe("presence-room", _channel_auth("presence-room"), None))
    assert grant.member is not None
    assert (grant.member.key, grant.member.user_info) == ("7", {"name": "Ada"})


def test_the_server_to_user_channel_is_only_for_that_signed_in_user() -> None:
    session = _session()
    _refusal(session, Subscribe("#server-to-user-7", "", None))
    user_data = '{"id":"7"}'
    session.user = session.authorize_signin(Signin(_user_auth(user_data), user_data))
    assert session.authorize_subscribe(Subscribe("#server-to-user-7", "", None)).kind \
        .server_to_user
    _refusal(session, Subscribe("#server-to-user-8", "", None))


def test_subscriptions_are_recorded_and_forgotten() -> None:
    session = _session()
    grant = session.authorize_subscribe(Subscribe("orders", "", None))
    session.note_subscribed(grant)
    assert session.note_unsubscribed("orders") == (True, None)
    assert session.note_unsubscribed("orders") == (False, None)


# --- sign-in (§10.1) ------------------------------------------------------------------


def test_a_valid_signin_yields_the_user() -> None:
    user_data = '{"id":"7","user_info":{"name":"Ada"},"watchlist":["9","12","9"]}'
    user = _session().authorize_signin(Signin(_user_auth(user_data), user_data))
    assert user.id == "7" and user.user_data == user_data
    assert user.user_info == {"name": "Ada"}
    assert user.watchlist == ("9", "12") and not user.watchlist_truncated


def test_a_signin_with_a_bad_signature_is_refused_with_4009() -> None:
    user_data = '{"id":"7"}'
    with pytest.raises(SigninRefused) as caught:
        _session().authorize_signin(Signin(_user_auth(user_data, secret="x"), user_data))
    assert caught.value.code == 4009


def test_a_signin_signed_for_another_socket_is_refused() -> None:
    user_data = '{"id":"7"}'
    with pytest.raises(SigninRefused):
        _session().authorize_signin(Signin(_user_auth(user_data, socket_id=OTHER_SOCKET),
                                           user_data))


@pytest.mark.parametrize(
    "user_data",
    ['{"user_info":{}}', '{"id":7}', '{"id":""}', "[]", "nope", '{"id":"has space"}',
     json.dumps({"id": "u" * 129}), '{"id":"7","watchlist":"9"}', '{"id":"7","watchlist":[9]}'],
)
def test_signin_user_data_without_a_usable_id_is_refused(user_data: str) -> None:
    with pytest.raises(SigninRefused):
        _session().authorize_signin(Signin(_user_auth(user_data), user_data))


def test_signing_in_as_another_user_on_a_signed_in_socket_is_refused() -> None:
    session = _session()
    first = '{"id":"7"}'
    session.user = session.authorize_signin(Signin(_user_auth(first), first))
    second = '{"id":"8"}'
    with pytest.raises(SigninRefused):
        session.authorize_signin(Signin(_user_auth(second), second))
    # The same user again is fine.
    assert session.authorize_signin(Signin(_user_auth(first), first)).id == "7"


def test_signin_is_refused_when_the_app_disables_user_authentication() -> None:
    user_data = '{"id":"7"}'
    with pytest.raises(SigninRefused):
        _session(_app(enable_user_authentication=False)).authorize_signin(
            Signin(_user_auth(user_data), user_data))


def test_a_watchlist_over_the_limit_is_truncated_and_flagged() -> None:
    user_data = json.dumps({"id": "7", "watchlist": [str(n) for n in range(5)]})
    user = _session(_app(max_watchlist_size=3)).authorize_signin(
        Signin(_user_auth(user_data), user_data))
    assert user.watchlist == ("0", "1", "2") and user.watchlist_truncated


# --- client events (§9) -----------------------------------------------------------------


def _subscribed_session(channel: str, app: App | None = None, now: float = 0.0,
                        user_id: str = "7") -> Session:
    session = _session(app, now)
    kind = classify_channel(channel)
    if kind.presence:
        data = json.dumps({"user_id": user_id})
        grant = session.authorize_subscribe(Subscribe(channel, _channel_auth(channel, data),
                                                      data))
    elif kind.requires_auth:
        grant = session.authorize_subscribe(Subscribe(channel, _channel_auth(channel), None))
    else:
        grant = session.authorize_subscribe(Subscribe(channel, "", None))
    session.note_subscribed(grant)
    return session


def _rejected(session: Session, event: ClientEvent, now: float = 0.0) -> ClientEventRejected:
    with pytest.raises(ClientEventRejected) as caught:
        session.authorize_client_event(event, now)
    assert caught.value.code == 4301
    assert caught.value.channel == event.channel
    return caught.value


def test_a_client_event_on_a_subscribed_private_channel_is_allowed() -> None:
    session = _subscribed_session("private-chat")
    assert session.authorize_client_event(ClientEvent("client-t", "private-chat", {}), 0.0) \
        is None


def test_a_client_event_on_presence_carries_the_senders_user_id() -> None:
    session = _subscribed_session("presence-room", user_id="42")
    assert session.authorize_client_event(ClientEvent("client-t", "presence-room", {}), 0.0) \
        == "42"


def test_client_events_are_rejected_when_the_app_disables_them() -> None:
    session = _subscribed_session("private-chat", _app(enable_client_events=False))
    refusal = _rejected(session, ClientEvent("client-t", "private-chat", {}))
    assert "enable_client_events" in refusal.message


def test_client_events_are_on_by_default() -> None:
    app = App(id=AppId("1"), key=AppKey(KEY), secret=SECRET)
    session = _subscribed_session("private-chat", app)
    assert session.authorize_client_event(ClientEvent("client-t", "private-chat", {}), 0.0) \
        is None


@pytest.mark.parametrize("channel", ["orders", "cache-prices"])
def test_client_events_on_public_channels_are_rejected(channel: str) -> None:
    _rejected(_subscribed_session(channel), ClientEvent("client-t", channel, {}))


def test_client_events_on_encrypted_channels_are_rejected() -> None:
    channel = "private-encrypted-x"
    _rejected(_subscribed_session(channel), ClientEvent("client-t", channel, {}))


def test_client_events_on_unsubscribed_channels_are_rejected() -> None:
    session = _subscribed_session("private-chat")
    _rejected(session, ClientEvent("client-t", "private-other", {}))


def test_client_event_data_over_the_size_limit_is_rejected() -> None:
    session = _subscribed_session("private-chat", _app(max_event_data_size=100))
    session.authorize_client_event(ClientEvent("client-t", "private-chat", "x" * 90), 0.0)
    _rejected(session, ClientEvent("client-t", "private-chat", "x" * 200))


def test_client_event_names_over_200_characters_are_rejected() -> None:
    session = _subscribed_session("private-chat")
    _rejected(session, ClientEvent("client-" + "e" * 200, "private-chat", {}))


def test_the_eleventh_client_event_within_one_second_is_rejected() -> None:
    session = _subscribed_session("private-chat", now=100.0)
    event = ClientEvent("client-t", "private-chat", {})
    for n in range(10):
        session.authorize_client_event(event, 100.0 + n * 0.05)
    rejected = _rejected(session, event, now=100.9)
    assert "rate" in rejected.message.lower()
    # A new one-second window admits events again.
    session.authorize_client_event(event, 101.0)


def test_the_rate_limit_follows_the_app_setting() -> None:
    session = _subscribed_session("private-chat", _app(max_client_events_per_second=2))
    event = ClientEvent("client-t", "private-chat", {})
    session.authorize_client_event(event, 0.0)
    session.authorize_client_event(event, 0.1)
    _rejected(session, event, now=0.2)


# --- keepalive (§5) ---------------------------------------------------------------------


def test_keepalive_pings_after_the_activity_timeout_plus_grace_then_closes() -> None:
    session = _session(now=0.0)
    assert session.keepalive_action(149.9, 120, 30, 30) is KeepaliveAction.NOTHING
    assert session.keepalive_action(150.0, 120, 30, 30) is KeepaliveAction.PING
    # One ping only while waiting for the answer.
    assert session.keepalive_action(160.0, 120, 30, 30) is KeepaliveAction.NOTHING
    assert session.keepalive_action(180.0, 120, 30, 30) is KeepaliveAction.CLOSE


def test_any_inbound_frame_after_a_ping_cancels_the_close() -> None:
    session = _session(now=0.0)
    assert session.keepalive_action(150.0, 120, 30, 30) is KeepaliveAction.PING
    session.note_activity(170.0)
    assert session.keepalive_action(200.0, 120, 30, 30) is KeepaliveAction.NOTHING
    assert session.keepalive_action(320.0, 120, 30, 30) is KeepaliveAction.PING


def test_activity_keeps_a_chatty_client_from_being_pinged() -> None:
    session = _session(now=0.0)
    for t in range(0, 1000, 100):
        session.note_activity(float(t))
        assert session.keepalive_action(t + 149.0, 120, 30, 30) is KeepaliveAction.NOTHING
