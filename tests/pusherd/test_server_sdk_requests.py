"""Every request the official server SDKs build is accepted (protocol §12, §13).

The node ``pusher`` 5.3.4 SDK (through the conformance suite's node driver) and the Python
``pusher`` 3.3.4 SDK are driven for real against an in-process pusherd; the PHP SDK
(``pusher-php-server`` 7.x, what Laravel's ``pusher`` and ``reverb`` broadcasters use) is not
installed here, so its requests are built by hand exactly as its request builder writes
them: ``channels`` always an array, JSON with ``\\/`` escapes, ``body_md5`` on POST only,
query values form-encoded (``%2C``), ``Content-Type: application/json`` also on GET.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest

from protocol_tests.nodedriver import NodeDriver
from tests.pusherd.wire import (
    APP,
    Client,
    call,
    channel_auth,
    http_request,
    sdk,
    trigger_raw,
    user_auth,
)

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
ENCRYPTED = ("private-encrypted-order.1", "private-encrypted-order.2")


@pytest.fixture
async def node(port: int) -> AsyncIterator[NodeDriver]:
    driver = NodeDriver({"appId": APP.id, "appKey": APP.key, "appSecret": APP.secret,
                         "host": "127.0.0.1", "port": port, "masterKey": MASTER_KEY})
    await driver.start()
    yield driver
    await driver.stop()


async def _listener(port: int, user_id: str = "7") -> Client:
    """A socket signed in as `user_id`, on a public, a presence and both encrypted channels."""
    client = await Client.open(port)
    user_data = json.dumps({"id": user_id})
    await client.send({"event": "pusher:signin", "data": {
        "auth": user_auth(client.socket_id, user_data), "user_data": user_data}})
    await client.expect("pusher:signin_success")
    await client.subscribe_ok("orders")
    channel_data = json.dumps({"user_id": user_id})
    await client.subscribe_ok("presence-room", channel_auth(
        client.socket_id, "presence-room", channel_data), channel_data)
    for channel in ENCRYPTED:
        await client.subscribe_ok(channel, channel_auth(client.socket_id, channel))
    return client


def _is_ciphertext(data: Any) -> bool:
    parsed = json.loads(data)
    return isinstance(parsed, dict) and set(parsed) == {"nonce", "ciphertext"}


async def _terminated(client: Client) -> int | None:
    code, _ = await client.closed()
    return code


# --- node -------------------------------------------------------------------------------


async def test_every_request_the_node_sdk_builds_is_accepted(port: int, node: NodeDriver
                                                             ) -> None:
    client = await _listener(port)

    async def js(expression: str) -> Any:
        return await node.run(f"const r = await {expression};"
                              " return {status: r.status, body: await r.json()};")

    assert await js("sdk().trigger('orders', 'one', {a: 1})") == {"status": 200, "body": {}}
    assert json.loads((await client.expect("one", "orders"))["data"]) == {"a": 1}
    assert (await js("sdk().trigger(['orders', 'presence-room'], 'two', 'x', "
                     "{socket_id: '1.1'})"))["status"] == 200
    await client.expect("two", "orders")
    await client.expect("two", "presence-room")
    assert await js("sdk().trigger('presence-room', 'three', 'x', "
                    "{info: 'user_count,subscription_count'})") == {"status": 200, "body": {
        "channels": {"presence-room": {"user_count": 1, "subscription_count": 1}}}}
    await client.expect("three", "presence-room")
    assert (await js(f"sdk().trigger('{ENCRYPTED[0]}', 'secret', {{a: 1}})"))["status"] == 200
    assert _is_ciphertext((await client.expect("secret", ENCRYPTED[0]))["data"])
    assert await js("sdk().triggerBatch(["
                    "{channel: 'orders', name: 'b1', data: 'x', info: 'subscription_count'},"
                    f"{{channel: '{ENCRYPTED[1]}', name: 'b2', data: {{a: 1}}}}])") == {
        "status": 200, "body": {"batch": [{"subscription_count": 1}, {}]}}
    await client.expect("b1", "orders")
    assert _is_ciphertext((await client.expect("b2", ENCRYPTED[1]))["data"])
    assert await js("sdk().get({path: '/channels', params: {filter_by_prefix: 'presence-', "
                    "info: 'user_count,subscription_count'}})") == {"status": 200, "body": {
        "channels": {"presence-room": {"user_count": 1, "subscription_count": 1}}}}
    assert await js("sdk().get({path: '/channels/presence-room', "
                    "params: {info: 'user_count,subscription_count'}})") == {
        "status": 200, "body": {"occupied": True, "user_count": 1, "subscription_count": 1}}
    assert await js("sdk().get({path: '/channels/presence-room/users'})") == {
        "status": 200, "body": {"users": [{"id": "7"}]}}
    assert (await js("sdk().sendToUser('7', 'hello', {a: 1})"))["status"] == 200
    await client.expect("hello", "#server-to-user-7")
    assert await js("sdk().terminateUserConnections('7')") == {"status": 200, "body": {}}
    assert await _terminated(client) == 4009


# --- Python -----------------------------------------------------------------------------


async def test_every_request_the_python_sdk_builds_is_accepted(port: int) -> None:
    client = await _listener(port)
    backend = sdk(port, encryption_master_key_base64=MASTER_KEY)
    assert await call(backend.trigger, "orders", "one", {"a": 1}) == {}
    assert json.loads((await client.expect("one", "orders"))["data"]) == {"a": 1}
    assert await call(backend.trigger, ["orders", "presence-room"], "two", "x", "1.1") == {}
    await client.expect("two", "orders")
    await client.expect("two", "presence-room")
    assert await call(backend.trigger, ENCRYPTED[0], "secret", {"a": 1}) == {}
    assert _is_ciphertext((await client.expect("secret", ENCRYPTED[0]))["data"])
    assert await call(backend.trigger_batch, [
        {"channel": "presence-room", "name": "b1", "data": "x",
         "info": "user_count,subscription_count"},
        {"channel": ENCRYPTED[1], "name": "b2", "data": {"a": 1}},
    ]) == {"batch": [{"user_count": 1, "subscription_count": 1}, {}]}
    await client.expect("b1", "presence-room")
    assert _is_ciphertext((await client.expect("b2", ENCRYPTED[1]))["data"])
    assert await call(backend.channels_info, "presence-",
                      ["user_count", "subscription_count"]) == {
        "channels": {"presence-room": {"user_count": 1, "subscription_count": 1}}}
    assert await call(backend.channel_info, "presence-room",
                      ["user_count", "subscription_count"]) == {
        "occupied": True, "user_count": 1, "subscription_count": 1}
    assert await call(backend.users_info, "presence-room") == {"users": [{"id": "7"}]}
    assert await call(backend.terminate_user_connections, "7") == {}
    assert await _terminated(client) == 4009


# --- PHP (requests as pusher-php-server 7.x builds them) --------------------------------


def _php_request(method: str, path: str, body: bytes = b"",
                 params: dict[str, str] | None = None) -> str:
    """The query string pusher-php-server 7.x sends: auth parameters, ``body_md5`` on
    POST only, every value form-encoded (``,`` as ``%2C``); signed over the plain values."""
    query = dict(params or {})
    query.update({"auth_key": APP.key, "auth_timestamp": str(int(time.time())),
                  "auth_version": "1.0"})
    if method == "POST":
        query["body_md5"] = hashlib.md5(body).hexdigest()
    text = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
    query["auth_signature"] = hmac.new(APP.secret.encode(), f"{method}\n{path}\n{text}".encode(),
                                       hashlib.sha256).hexdigest()
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())


def _php_json(value: Any) -> bytes:
    # json_encode's defaults: "/" escaped as "\/", no spaces.
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode()


async def _php(port: int, method: str, path: str, value: Any = None,
               params: dict[str, str] | None = None) -> tuple[int, Any]:
    body = b"" if value is None else _php_json(value)
    reply = await http_request(port, method, f"{path}?{_php_request(method, path, body, params)}",
                               body, headers={"Content-Type": "application/json",
                                              "X-Pusher-Library": "pusher-http-php 7.2.4"})
    return reply.status, reply.json()


async def test_every_request_the_php_sdk_builds_is_accepted(port: int) -> None:
    client = await _listener(port)
    events = f"/apps/{APP.id}/events"
    assert await _php(port, "POST", events, {
        "name": "one", "data": json.dumps({"url": "https://x/y"}), "channels": ["orders"]}
    ) == (200, {})
    assert json.loads((await client.expect("one", "orders"))["data"]) == {"url": "https://x/y"}
    assert await _php(port, "POST", events, {
        "name": "two", "data": "x", "channels": ["orders", "presence-room"],
        "socket_id": "1.1", "info": "user_count,subscription_count"}) == (200, {"channels": {
            "orders": {"subscription_count": 1},
            "presence-room": {"user_count": 1, "subscription_count": 1}}})
    await client.expect("two", "orders")
    await client.expect("two", "presence-room")
    ciphertext = json.dumps({"nonce": base64.b64encode(os.urandom(24)).decode(),
                             "ciphertext": base64.b64encode(os.urandom(40)).decode()})
    assert await _php(port, "POST", events, {
        "name": "secret", "data": ciphertext, "channels": [ENCRYPTED[0]]}) == (200, {})
    assert (await client.expect("secret", ENCRYPTED[0]))["data"] == ciphertext
    assert await _php(port, "POST", f"/apps/{APP.id}/batch_events", {"batch": [
        {"channel": "orders", "name": "b1", "data": "x", "info": "subscription_count"},
        {"channel": ENCRYPTED[1], "name": "b2", "data": ciphertext}]}) == (
        200, {"batch": [{"subscription_count": 1}, {}]})
    await client.expect("b1", "orders")
    assert (await client.expect("b2", ENCRYPTED[1]))["data"] == ciphertext
    info = {"info": "user_count,subscription_count"}
    assert await _php(port, "GET", f"/apps/{APP.id}/channels",
                      params={"filter_by_prefix": "presence-", **info}) == (200, {"channels": {
                          "presence-room": {"user_count": 1, "subscription_count": 1}}})
    assert await _php(port, "GET", f"/apps/{APP.id}/channels/presence-room", params=info) == (
        200, {"occupied": True, "user_count": 1, "subscription_count": 1})
    assert await _php(port, "GET", f"/apps/{APP.id}/channels/presence-room/users") == (
        200, {"users": [{"id": "7"}]})
    assert await _php(port, "POST", f"/apps/{APP.id}/users/7/terminate_connections", {}) == (
        200, {})
    assert await _terminated(client) == 4009


# --- one trigger on several encrypted channels (issue: Laravel-style multi-channel) -----


async def test_one_trigger_on_several_encrypted_channels_is_delivered_on_each(port: int
                                                                              ) -> None:
    client = await _listener(port)
    ciphertext = json.dumps({"nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"})
    reply = await trigger_raw(port, {"name": "App\\Events\\OrderShipped", "data": ciphertext,
                                     "channels": list(ENCRYPTED)})
    assert (reply.status, reply.json()) == (200, {})
    for channel in ENCRYPTED:
        frame = await client.expect("App\\Events\\OrderShipped", channel)
        assert frame["data"] == ciphertext  # relayed byte for byte, never decrypted
    await client.close()


async def test_a_trigger_mixing_encrypted_and_unencrypted_channels_says_why_it_is_refused(
    port: int,
) -> None:
    client = await _listener(port)
    reply = await trigger_raw(port, {"name": "e", "data": "{}",
                                     "channels": [ENCRYPTED[0], "orders"]})
    assert reply.status == 400
    assert "encrypted and unencrypted" in reply.json()["error"]
    assert await client.barrier() == []  # nothing was delivered
    await client.close()
