"""Fixtures of the scale-out tests: Redis under a private prefix, or a private server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from tests.support.redis_server import (
    SHARED_REDIS_URL,
    PrivateRedis,
    delete_prefix,
    unique_prefix,
)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted after."""
    prefix = unique_prefix()
    yield prefix
    delete_prefix(SHARED_REDIS_URL, prefix)


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(SHARED_REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (for killing and restarting it)."""
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()
