"""Several real pusherd processes forming one cluster over Redis, for the tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from tests.pusherd.wire import APP, OTHER_APP, AppCredentials, Client, channel_auth, user_auth
from tests.support.pusherd_process import PusherdProcess, run_pusherd


def cluster_toml(redis_url: str, prefix: str, lease_ttl: float = 2.0,
                 reap_interval: float = 0.25, extra_app: str = "", extra_redis: str = ""
                 ) -> str:
    return f"""
[server]
host = "127.0.0.1"
port = 0
shutdown_timeout = 2

[redis]
url = "{redis_url}"
prefix = "{prefix}"
lease_ttl = {lease_ttl}
reap_interval = {reap_interval}
{extra_redis}

[[apps]]
id = "{APP.id}"
key = "{APP.key}"
secret = "{APP.secret}"
enable_client_events = true
enable_user_authentication = true
max_presence_members = 3
cache_ttl = 60

[[apps]]
id = "{OTHER_APP.id}"
key = "{OTHER_APP.key}"
secret = "{OTHER_APP.secret}"
enable_subscription_count = true
{extra_app}
"""


@contextmanager
def run_cluster(count: int, redis_url: str, prefix: str, **options: Any
                ) -> Iterator[list[PusherdProcess]]:
    """Start `count` pusherd processes on port 0 sharing `redis_url` and `prefix`."""
    toml = cluster_toml(redis_url, prefix, **options)
    with ExitStack() as stack:
        yield [stack.enter_context(run_pusherd(toml)) for _ in range(count)]


async def join_presence(node: PusherdProcess, channel: str, user_id: Any,
                        user_info: Any = None) -> tuple[Client, dict[str, Any]]:
    """Connect to `node` and join presence `channel` as `user_id`; (client, roster)."""
    client = await Client.open(node.port)
    channel_data = json.dumps({"user_id": user_id, "user_info": user_info})
    frame = await client.subscribe_ok(
        channel, channel_auth(client.socket_id, channel, channel_data), channel_data)
    return client, json.loads(frame["data"])["presence"]


async def join_private(node: PusherdProcess, channel: str, app: AppCredentials = APP
                       ) -> Client:
    client = await Client.open(node.port, app.key)
    await client.subscribe_ok(channel, channel_auth(client.socket_id, channel, app=app))
    return client


async def sign_in(node: PusherdProcess, user_id: str, watchlist: list[str] | None = None
                  ) -> tuple[Client, list[dict[str, Any]]]:
    """Connect and sign in; (client, [the watchlist_events frame] when a watchlist is
    given, else []). On a cluster the watchlist's state comes from Redis, so that frame
    follows signin_success after one round trip."""
    client = await Client.open(node.port)
    user: dict[str, Any] = {"id": user_id}
    if watchlist is not None:
        user["watchlist"] = watchlist
    user_data = json.dumps(user)
    await client.send({"event": "pusher:signin", "data": {
        "user_data": user_data, "auth": user_auth(client.socket_id, user_data)}})
    await client.expect("pusher:signin_success")
    if watchlist:
        return client, [await client.expect("pusher_internal:watchlist_events")]
    return client, []
