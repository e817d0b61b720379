"""A Laravel .env's Redis settings as they are: TLS (rediss://), a password and a database
number, through REVERB_SCALING_ENABLED and the REDIS_* variables, against a private
redis-server that only speaks TLS and requires the password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.cluster.nodes import cluster_toml, join_presence
from tests.conformance.tls_proxy import make_certificate
from tests.support.pusherd_process import run_pusherd
from tests.support.redis_server import PrivateRedis

PASSWORD = "s3cret-Pa55"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    cert, key = make_certificate(tmp_path)
    server = PrivateRedis(password=PASSWORD, tls_cert=str(cert), tls_key=str(key))
    server.start()
    yield server
    server.stop()


async def test_a_laravel_env_with_tls_password_and_database_scales_as_it_is(
        tls_redis: PrivateRedis) -> None:
    env = {"REVERB_SCALING_ENABLED": "true",
           "REDIS_URL": f"rediss://127.0.0.1:{tls_redis.port}?ssl_ca_certs={tls_redis.tls_cert}",
           "REDIS_PASSWORD": PASSWORD, "REDIS_DB": "3"}
    toml = cluster_toml("", "laravel")
    with ExitStack() as stack:
        one = stack.enter_context(run_pusherd(toml, env=env))
        two = stack.enter_context(run_pusherd(toml, env=env))
        ann, _ = await join_presence(one, "presence-tls", "ann")
        _, roster = await join_presence(two, "presence-tls", "bob")
        assert sorted(roster["ids"]) == ["ann", "bob"]  # the nodes share state...
        await ann.expect("pusher_internal:member_added", "presence-tls")
        # ...in database 3, over TLS, with the password.
        client = Redis.from_url(tls_redis.url.replace("/0?", "/3?"))
        try:
            assert await client.zcard("laravel:nodes") == 2
            assert sorted(await client.hkeys("laravel:app:1001:presence:presence-tls")) == [
                b"ann", b"bob"]
        finally:
            await client.aclose()
        for node in (one, two):
            assert not any(PASSWORD in line for line in node.output)
