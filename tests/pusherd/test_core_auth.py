"""pusherd.core.auth: every HMAC of the protocol, checked against the spec's §18 vectors.

Pure tests: no event loop, no clock (``now`` is passed in).
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pusherd.core import auth
from pusherd.errors import HttpApiError

APP_ID = "3"
KEY = "278d425bdf160c739803"
SECRET = "7ad3773142a6692b25b8"
SOCKET = "1234.1234"
TIMESTAMP = 1353088179
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


# --- §18 vectors -------------------------------------------------------------------------


def test_private_channel_signature_matches_the_spec_vector() -> None:
    token = auth.sign_channel_auth(KEY, SECRET, SOCKET, "private-foobar")
    assert token == (
        f"{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    )
    assert auth.verify_channel_auth(KEY, SECRET, SOCKET, "private-foobar", token, None)


def test_presence_channel_signature_covers_the_exact_channel_data() -> None:
    channel_data = '{"user_id":"42","user_info":{"name":"Ada"}}'
    token = auth.sign_channel_auth(KEY, SECRET, SOCKET, "presence-room", channel_data)
    assert token == (
        f"{KEY}:6a67472fc8789e0f93c4cad4c39dbd0aa5960ad3e22d108ee908fb5944f86e1c"
    )
    assert auth.verify_channel_auth(KEY, SECRET, SOCKET, "presence-room", token, channel_data)
    # The same JSON with Python's spacing is a different string: it must not verify.
    respaced = '{"user_id": "42", "user_info": {"name": "Ada"}}'
    assert not auth.verify_channel_auth(KEY, SECRET, SOCKET, "presence-room", token, respaced)


@pytest.mark.parametrize(
    ("user_data", "expected"),
    [
        ('{"id":"12345"}', "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"),
        (
            '{"id":"42","user_info":{"name":"Ada"}}',
            "908c4234557a5d890d991e42f54870d2665db2af23bdcb56ba491da4781e16df",
        ),
    ],
)
def test_signin_signature_matches_the_spec_vectors(user_data: str, expected: str) -> None:
    token = auth.sign_user_auth(KEY, SECRET, SOCKET, user_data)
    assert token == f"{KEY}:{expected}"
    assert auth.verify_user_auth(KEY, SECRET, SOCKET, token, user_data)


def _get_channels_params(with_body_md5: bool) -> list[tuple[str, str]]:
    params = [
        ("auth_key", KEY),
        ("auth_timestamp", str(TIMESTAMP)),
        ("auth_version", "1.0"),
        ("filter_by_prefix", "presence-"),
        ("info", "user_count"),
    ]
    if with_body_md5:
        params.append(("body_md5", EMPTY_MD5))
    return params


def test_node_style_get_request_signature_matches_the_spec_vector() -> None:
    params = _get_channels_params(with_body_md5=False)
    assert auth.api_string_to_sign("GET", "/apps/3/channels", params) == (
        "GET\n/apps/3/channels\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&filter_by_prefix=presence-&info=user_count"
    )
    assert auth.sign_api_request(SECRET, "GET", "/apps/3/channels", params) == (
        "16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"
    )


def test_python_style_get_request_signs_body_md5_in_sorted_position() -> None:
    params = _get_channels_params(with_body_md5=True)
    assert auth.sign_api_request(SECRET, "GET", "/apps/3/channels", params) == (
        "f3f17c61ae491cc9085db68b22076e9b772e3bcb301659d655153ee3f9782aba"
    )


def test_terminate_connections_signature_matches_the_spec_vector() -> None:
    body = b"{}"
    md5 = hashlib.md5(body).hexdigest()
    assert md5 == "99914b932bd37a50b983c5e7c90ae93b"
    params = [("auth_key", KEY), ("auth_timestamp", str(TIMESTAMP)), ("auth_version", "1.0"),
              ("body_md5", md5)]
    path = "/apps/3/users/42/terminate_connections"
    assert auth.sign_api_request(SECRET, "POST", path, params) == (
        "2829710742ff5f799010258297d09016e2366257e3e954039eeda349073a2bcf"
    )


def test_webhook_signature_is_the_hmac_of_the_raw_body() -> None:
    body = (b'{"time_ms":1700000000000,"events":[{"name":"channel_occupied",'
            b'"channel":"my-channel"}]}')
    assert auth.sign_webhook(SECRET, body) == (
        "cb2683f8aaa9de8cdbc72838077bd6ac7c3e64c57fe83fb7b13812a1bd5df142"
    )


WORKED_BODY = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
WORKED_SIGNATURE = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"


def _worked_params(signature: str = WORKED_SIGNATURE) -> list[tuple[str, str]]:
    return [("auth_key", KEY), ("auth_timestamp", str(TIMESTAMP)), ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"), ("auth_signature", signature)]


def test_post_events_worked_example_signs_and_verifies() -> None:
    assert hashlib.md5(WORKED_BODY).hexdigest() == "ec365a775a4cd0599faeb73354201b6f"
    params = _worked_params()
    # auth_signature is left out of the string to sign.
    assert auth.sign_api_request(SECRET, "POST", "/apps/3/events", params) == WORKED_SIGNATURE
    auth.verify_api_request(app_key=KEY, secret=SECRET, method="POST",
                            paths=("/apps/3/events",), params=params, body=WORKED_BODY,
                            now=TIMESTAMP)


def test_encrypted_channel_shared_secret_matches_the_spec_vector() -> None:
    assert auth.encryption_shared_secret("private-encrypted-foo", bytes(range(32))) == (
        "E3I6KxLwqP1Rr/p1676Vpnrw23CkRdS5bkX5NazRkeY="
    )


# --- channel and user auth refusals -------------------------------------------------------


def test_channel_auth_from_another_socket_does_not_verify() -> None:
    token = auth.sign_channel_auth(KEY, SECRET, "1.1", "private-foobar")
    assert not auth.verify_channel_auth(KEY, SECRET, SOCKET, "private-foobar", token, None)


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",  # no key prefix
        "wrong-key:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",
        f"{KEY}:",
        f"{KEY}:00",
    ],
)
def test_channel_auth_without_our_key_or_signature_does_not_verify(token: str | None) -> None:
    assert not auth.verify_channel_auth(KEY, SECRET, SOCKET, "private-foobar", token, None)


def test_signin_signed_with_another_secret_does_not_verify() -> None:
    user_data = '{"id":"42"}'
    token = auth.sign_user_auth(KEY, "not-the-secret", SOCKET, user_data)
    assert not auth.verify_user_auth(KEY, SECRET, SOCKET, token, user_data)


# --- verify_api_request (§13.3) ---------------------------------------------------------


def _signed(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    timestamp: int = TIMESTAMP,
    include_md5: bool | None = None,
    md5: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    secret: str = SECRET,
    key: str = KEY,
) -> list[tuple[str, str]]:
    params = [("auth_key", key), ("auth_timestamp", str(timestamp)), ("auth_version", "1.0")]
    params += extra or []
    if include_md5 is None:
        include_md5 = bool(body)
    if include_md5:
        params.append(("body_md5", md5 if md5 is not None else hashlib.md5(body).hexdigest()))
    params.append(("auth_signature", auth.sign_api_request(secret, method, path, params)))
    return params


def _verify(
    params: list[tuple[str, str]],
    *,
    method: str = "POST",
    paths: tuple[str, ...] = ("/apps/3/events",),
    body: bytes = b"",
    now: float = TIMESTAMP,
) -> None:
    auth.verify_api_request(app_key=KEY, secret=SECRET, method=method, paths=paths,
                            params=params, body=body, now=now)


def test_a_correctly_signed_request_passes() -> None:
    body = b'{"name":"e","channels":["c"],"data":"x"}'
    _verify(_signed("POST", "/apps/3/events", body), body=body)


def test_a_request_signed_with_another_secret_is_refused_with_401() -> None:
    body = b'{"name":"e","channels":["c"],"data":"x"}'
    with pytest.raises(HttpApiError) as caught:
        _verify(_signed("POST", "/apps/3/events", body, secret="other"), body=body)
    assert caught.value.status == 401


def test_a_bad_signature_is_answered_with_the_string_that_should_have_been_signed() -> None:
    wrong = "0" * 64
    with pytest.raises(HttpApiError) as caught:
        _verify(_worked_params(wrong), body=WORKED_BODY, paths=("/apps/3/events",))
    expected = ("POST\\n/apps/3/events\\nauth_key=278d425bdf160c739803"
                "&auth_timestamp=1353088179&auth_version=1.0"
                "&body_md5=ec365a775a4cd0599faeb73354201b6f")
    assert caught.value.status == 401
    assert f'"{expected}"' in caught.value.message
    assert f'you sent "{wrong}"' in caught.value.message
    assert SECRET not in caught.value.message
    assert WORKED_SIGNATURE not in caught.value.message  # nor the right answer


def test_a_tampered_body_is_refused_with_401() -> None:
    body = b'{"name":"e","channels":["c"],"data":"x"}'
    params = _signed("POST", "/apps/3/events", body)
    with pytest.raises(HttpApiError) as caught:
        _verify(params, body=body.replace(b'"x"', b'"y"'))
    assert caught.value.status == 401


@pytest.mark.parametrize("offset", [-600, 600, 0, -1, 1])
def test_timestamps_within_600_seconds_are_accepted(offset: int) -> None:
    _verify(_signed("GET", "/apps/3/channels", timestamp=TIMESTAMP + offset),
            method="GET", paths=("/apps/3/channels",))


@pytest.mark.parametrize("offset", [-601, 601, -86_400, 86_400])
def test_stale_and_future_timestamps_are_refused_with_401(offset: int) -> None:
    with pytest.raises(HttpApiError) as caught:
        _verify(_signed("GET", "/apps/3/channels", timestamp=TIMESTAMP + offset),
                method="GET", paths=("/apps/3/channels",))
    assert caught.value.status == 401


def test_a_non_integer_timestamp_is_refused_with_401() -> None:
    params = [("auth_key", KEY), ("auth_timestamp", "yesterday"), ("auth_version", "1.0")]
    params.append(("auth_signature", auth.sign_api_request(SECRET, "GET", "/apps/3/channels",
                                                           params)))
    with pytest.raises(HttpApiError) as caught:
        _verify(params, method="GET", paths=("/apps/3/channels",))
    assert caught.value.status == 401


def test_an_unknown_auth_key_is_refused_with_401() -> None:
    with pytest.raises(HttpApiError) as caught:
        _verify(_signed("GET", "/apps/3/channels", key="someone-else"),
                method="GET", paths=("/apps/3/channels",))
    assert caught.value.status == 401


@pytest.mark.parametrize("missing", ["auth_key", "auth_timestamp", "auth_signature"])
def test_a_request_missing_an_auth_parameter_is_refused_with_401(missing: str) -> None:
    params = [(k, v) for k, v in _signed("GET", "/apps/3/channels") if k != missing]
    with pytest.raises(HttpApiError) as caught:
        _verify(params, method="GET", paths=("/apps/3/channels",))
    assert caught.value.status == 401


def test_a_wrong_body_md5_is_refused_even_when_the_signature_covers_it() -> None:
    body = b'{"name":"e","channels":["c"],"data":"x"}'
    params = _signed("POST", "/apps/3/events", body, md5="0" * 32)
    with pytest.raises(HttpApiError) as caught:
        _verify(params, body=body)
    assert caught.value.status == 401


def test_a_body_without_body_md5_is_refused_with_401() -> None:
    body = b'{"name":"e","channels":["c"],"data":"x"}'
    params = _signed("POST", "/apps/3/events", body, include_md5=False)
    with pytest.raises(HttpApiError) as caught:
        _verify(params, body=body)
    assert caught.value.status == 401


def test_the_empty_body_md5_is_accepted_on_a_get_as_the_python_sdk_sends_it() -> None:
    params = _signed("GET", "/apps/3/channels", include_md5=True)
    assert ("body_md5", EMPTY_MD5) in params
    _verify(params, method="GET", paths=("/apps/3/channels",))


def test_a_non_empty_md5_on_an_empty_body_is_refused() -> None:
    params = _signed("GET", "/apps/3/channels", include_md5=True, md5="0" * 32)
    with pytest.raises(HttpApiError) as caught:
        _verify(params, method="GET", paths=("/apps/3/channels",))
    assert caught.value.status == 401


@pytest.mark.parametrize("duplicated", ["auth_key", "auth_timestamp", "auth_signature",
                                        "body_md5"])
def test_duplicate_auth_parameters_are_refused(duplicated: str) -> None:
    body = b'{"name":"e","channels":["c"],"data":"x"}'
    params = _signed("POST", "/apps/3/events", body)
    value = dict(params)[duplicated]
    params.append((duplicated, value))
    with pytest.raises(HttpApiError) as caught:
        _verify(params, body=body)
    assert caught.value.status in (400, 401)


def test_parameter_keys_are_lowercased_and_sorted_in_the_string_to_sign() -> None:
    text = auth.api_string_to_sign("get", "/p", [("B", "2"), ("a", "1"), ("auth_signature", "x")])
    assert text == "GET\n/p\na=1&b=2"


def test_a_client_that_signed_the_decoded_path_is_accepted_via_the_fallback() -> None:
    decoded = "/apps/3/channels/private-a;b@c"
    raw = "/apps/3/channels/private-a%3Bb%40c"
    params = _signed("GET", decoded)
    with pytest.raises(HttpApiError):
        _verify(params, method="GET", paths=(raw,))
    _verify(params, method="GET", paths=(raw, decoded))


def test_a_client_that_signed_the_raw_path_is_accepted_first() -> None:
    raw = "/apps/3/channels/private-a%3Bb"
    params = _signed("GET", raw)
    _verify(params, method="GET", paths=(raw, "/apps/3/channels/private-a;b"))


def test_upper_case_parameter_keys_are_lowercased_before_verifying() -> None:
    body = b'{"name":"e","channels":["c"],"data":"x"}'
    params = [(key.upper(), value) for key, value in _signed("POST", "/apps/3/events", body)]
    _verify(params, body=body)


def test_an_auth_parameter_repeated_in_another_case_is_refused_with_400() -> None:
    body = b'{"name":"e","channels":["c"],"data":"x"}'
    params = _signed("POST", "/apps/3/events", body)
    params.append(("AUTH_KEY", KEY))
    with pytest.raises(HttpApiError) as caught:
        _verify(params, body=body)
    assert caught.value.status == 400


def test_a_repeated_ordinary_parameter_is_signed_with_both_values() -> None:
    params = _signed("GET", "/apps/3/channels", extra=[("info", "b"), ("info", "a")])
    _verify(params, method="GET", paths=("/apps/3/channels",))
    tampered = [(k, "c" if (k, v) == ("info", "a") else v) for k, v in params]
    with pytest.raises(HttpApiError) as caught:
        _verify(tampered, method="GET", paths=("/apps/3/channels",))
    assert caught.value.status == 401


def test_sign_reuses_a_keyed_hmac_without_carrying_state_between_messages() -> None:
    expected_a = hmac.new(b"secret-a", b"one", hashlib.sha256).hexdigest()
    expected_b = hmac.new(b"secret-b", b"two", hashlib.sha256).hexdigest()
    for _ in range(3):
        assert auth.sign("secret-a", "one") == expected_a
        assert auth.sign("secret-b", "two") == expected_b
