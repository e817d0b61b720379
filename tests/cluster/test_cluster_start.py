"""Starting a cluster node: what it says, a Redis setting that can never work (exit 2),
a Redis that is not there yet (an outage: the node starts and waits), and deployments
that share one Redis. Real pusherd processes; a private redis-server for the refusals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.nodes import cluster_toml, join_presence, join_private
from tests.cluster.waiting import wait_until
from tests.conformance.tls_proxy import make_certificate
from tests.pusherd.wire import Client, call, sdk
from tests.support.pusherd_process import REPO_ROOT, PusherdProcess, run_pusherd
from tests.support.redis_server import (
    SHARED_REDIS_URL,
    PrivateRedis,
    delete_prefix,
    free_port,
    unique_prefix,
)

PASSWORD = "s3cret-Pa55"


def _get(node: PusherdProcess, path: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(f"{node.http_url}{path}", timeout=5) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PUSHERD_", "REVERB_", "REDIS_"))}


@pytest.fixture
def password_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(password=PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    cert, key = make_certificate(tmp_path)
    server = PrivateRedis(tls_cert=str(cert), tls_key=str(key))
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(("url", "env", "key", "said"), [
    ("redis://:wrong-pw@127.0.0.1:{port}/3", {}, "PUSHERD_REDIS_URL", "authentication failed"),
    ("redis://127.0.0.1:{port}/0", {}, "PUSHERD_REDIS_URL", "authentication failed"),
    ("redis://:" + PASSWORD + "@127.0.0.1:{port}/99", {}, "PUSHERD_REDIS_URL",
     "DB index is out of range"),
    # A password in the query (redis-py reads it there too) is never shown either.
    ("redis://127.0.0.1:{port}/0?password=wrong-pw", {}, "PUSHERD_REDIS_URL",
     "authentication failed"),
    # The same from a Laravel .env.
    ("", {"REVERB_SCALING_ENABLED": "true", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "{port}",
          "REDIS_PASSWORD": "wrong-pw"}, "REDIS_HOST", "authentication failed"),
])
def test_a_redis_setting_that_can_never_work_stops_the_start_with_status_2(
        password_redis: PrivateRedis, url: str, env: dict[str, str], key: str,
        said: str) -> None:
    port = str(password_redis.port)
    child_env = {**_clean_env(), **{k: v.replace("{port}", port) for k, v in env.items()}}
    if url:
        child_env["PUSHERD_REDIS_URL"] = url.replace("{port}", port)
    result = subprocess.run([sys.executable, "-m", "pusherd", "--port", "0"], cwd=REPO_ROOT,
                            env=child_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"config error: {key}: Redis at redis://" in result.stderr
    assert said in result.stderr
    assert "unreachable" not in result.stderr and "listening" not in result.stdout
    assert "wrong-pw" not in result.stderr + result.stdout
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.parametrize("rules", [
    "-evalsha",  # the node's scripts
    "-publish",  # the bus, written
    "-subscribe",  # the bus, read
    "resetchannels &other*",  # the bus channel itself
])
def test_an_acl_user_without_a_right_the_node_needs_stops_the_start_with_status_2(
        password_redis: PrivateRedis, rules: str) -> None:
    # Found by a reviewer: without EVALSHA the node served forever without its cluster,
    # and without the channel it flapped ready/not ready several times a second.
    import redis

    admin = redis.Redis.from_url(password_redis.url)
    try:
        admin.execute_command("ACL", "SETUSER", "weak", "on", ">weak-pw", "~*", "&*",
                              "+@all", *rules.split())
    finally:
        admin.close()
    url = f"redis://weak:weak-pw@127.0.0.1:{password_redis.port}/0"
    result = subprocess.run([sys.executable, "-m", "pusherd", "--port", "0"], cwd=REPO_ROOT,
                            env={**_clean_env(), "PUSHERD_REDIS_URL": url},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the ACL user lacks a permission pusherd needs" in result.stderr
    assert "listening" not in result.stdout and "weak-pw" not in result.stderr


def test_a_redis_certificate_that_does_not_verify_stops_the_start_with_status_2(
        tls_redis: PrivateRedis) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pusherd", "--port", "0"], cwd=REPO_ROOT,
        env={**_clean_env(), "PUSHERD_REDIS_URL": f"rediss://127.0.0.1:{tls_redis.port}/0"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "the TLS certificate did not verify" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


async def test_redis_not_there_at_start_is_an_outage_the_node_starts_and_recovers_from(
        ) -> None:
    # Nothing listens on this port yet: connection refused, which may pass.
    redis = PrivateRedis(port=free_port(), password=PASSWORD)
    toml = cluster_toml(redis.url, unique_prefix(), lease_ttl=1.0, reap_interval=0.25)
    try:
        with run_pusherd(toml) as node:
            # The port opened after lease_ttl without Redis: live, not ready.
            assert _get(node, "/up") == (200, {"status": "ok"})
            assert _get(node, "/ready") == (503, {"status": "adapter_unavailable"})
            banner = "".join(node.output)
            cluster_line = re.search(r"cluster: node (\S+) over Redis (\S+), key prefix", banner)
            assert cluster_line is not None, banner
            assert cluster_line.group(2) == f"redis://:***@127.0.0.1:{redis.port}/0"
            assert node.wait_for_output("not connected yet (retrying)") is not None
            assert PASSWORD not in banner
            redis.start()
            await wait_until(lambda: _get(node, "/ready")[0] == 200, bound=30,
                             what="/ready 200 once Redis is there")
            client = await join_private(node, "private-late")
            await call(sdk(node.port).trigger, "private-late", "hello", {})
            await client.expect("hello", "private-late")
    finally:
        redis.stop()


async def test_deployments_told_apart_by_their_scaling_channel_alone_share_no_state() -> None:
    # Two deployments with the same Laravel .env Redis and no prefix anywhere, one with
    # REVERB_SCALING_CHANNEL=<a>, one with <b>: each gets its own key prefix.
    channels = [f"{unique_prefix()}-{name}" for name in ("staging", "production")]
    toml = "\n".join(line for line in cluster_toml(SHARED_REDIS_URL, "unused").splitlines()
                     if not line.startswith(("url =", "prefix =")))
    try:
        with run_pusherd(toml, env={"PUSHERD_REDIS_URL": SHARED_REDIS_URL,
                                    "REVERB_SCALING_CHANNEL": channels[0]}) as staging, \
                run_pusherd(toml, env={"PUSHERD_REDIS_URL": SHARED_REDIS_URL,
                                       "REVERB_SCALING_CHANNEL": channels[1]}) as production:
            assert f"key prefix 'pusherd-{channels[0]}'" in "".join(staging.output)
            ua, roster_a = await join_presence(staging, "presence-room", "ua")
            ub, roster_b = await join_presence(production, "presence-room", "ub")
            assert roster_a["ids"] == ["ua"] and roster_b["ids"] == ["ub"]
            for node, user in ((staging, "ua"), (production, "ub")):
                users = await call(sdk(node.port).users_info, "presence-room")
                assert [u["id"] for u in users["users"]] == [user]
                info = await call(sdk(node.port).channel_info, "presence-room",
                                  attributes=["user_count"])
                assert info["user_count"] == 1
            # No member_added crosses over (a barrier proves nothing else arrived).
            assert await ua.barrier() == [] and await ub.barrier() == []
            # The cache channels are separate too.
            await call(sdk(staging.port).trigger, "cache-news", "update", {"n": 1})
            here = await Client.open(staging.port)
            await here.subscribe_ok("cache-news")
            await here.expect("update", "cache-news")
            there = await Client.open(production.port)
            await there.subscribe_ok("cache-news")
            await there.expect("pusher:cache_miss", "cache-news")
    finally:
        for channel in channels:
            delete_prefix(SHARED_REDIS_URL, f"pusherd-{channel}")


def _start_refused(tmp_path: Path, toml: str) -> subprocess.CompletedProcess[str]:
    """Run pusherd with `toml` expecting it to stop before listening."""
    config = tmp_path / "refused.toml"
    config.write_text(toml)
    return subprocess.run([sys.executable, "-m", "pusherd", "--config", str(config),
                           "--port", "0"], cwd=REPO_ROOT, env=_clean_env(),
                          capture_output=True, text=True, timeout=60)


def test_a_node_on_another_bus_channel_of_a_live_prefix_is_refused_with_status_2(
        redis_prefix: str, tmp_path: Path) -> None:
    # Same prefix: the state in Redis is shared, so a second bus would split the cluster.
    on_a = cluster_toml(SHARED_REDIS_URL, redis_prefix, extra_redis='channel = "a"')
    on_b = cluster_toml(SHARED_REDIS_URL, redis_prefix, extra_redis='channel = "b"')
    with run_pusherd(on_a):
        result = _start_refused(tmp_path, on_b)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "config error: redis.channel: bus channel 'b'" in result.stderr
        assert f"with key prefix '{redis_prefix}' use bus channel 'a'" in result.stderr
        assert "the same channel" in result.stderr and "another prefix" in result.stderr
        assert "listening" not in result.stdout
        # A node on the same channel joins as before.
        with run_pusherd(on_a):
            pass


def test_two_nodes_starting_together_on_different_channels_cannot_both_pass(
        redis_prefix: str) -> None:
    # Neither is live until it takes its lease, a moment after its start check: the check
    # claims the channel until then, in the same atomic step as it reads and records it.
    import redis

    from pusherd.adapters.cluster.keys import KeyLayout
    from pusherd.config import RedisConfig
    from pusherd.errors import ConfigError
    from pusherd.server.preflight import check_bus_channel

    on_a = RedisConfig(url=SHARED_REDIS_URL, prefix=redis_prefix, channel="a")
    on_b = RedisConfig(url=SHARED_REDIS_URL, prefix=redis_prefix, channel="b")
    claim = KeyLayout(redis_prefix).bus_channel_claim
    client = redis.Redis.from_url(SHARED_REDIS_URL)
    try:
        check_bus_channel(client, on_a)
        with pytest.raises(ConfigError) as refused:
            check_bus_channel(client, on_b)
        assert "a node starting now" in str(refused.value)
        assert "use bus channel 'a'" in str(refused.value)
        check_bus_channel(client, on_a)  # the same channel passes, and claims again
        assert client.get(claim) == b"a"
        assert 0 < client.pttl(claim) <= 10_000  # lease_ttl: a node that never takes one
        # A node's first lease ends the claim: it is live now, which protects the channel
        # as long as it runs; once it has stopped the prefix may change channel at once.
        with run_pusherd(cluster_toml(SHARED_REDIS_URL, redis_prefix,
                                      extra_redis='channel = "a"')):
            assert client.exists(claim) == 0
            with pytest.raises(ConfigError, match="1 live node"):
                check_bus_channel(client, on_b)
        check_bus_channel(client, on_b)
        assert client.get(KeyLayout(redis_prefix).bus_channel) == b"b"
    finally:
        client.close()


def test_a_prefix_may_change_its_bus_channel_once_no_node_of_it_is_live(
        redis_prefix: str, tmp_path: Path) -> None:
    on_a = cluster_toml(SHARED_REDIS_URL, redis_prefix, extra_redis='channel = "a"')
    on_b = cluster_toml(SHARED_REDIS_URL, redis_prefix, extra_redis='channel = "b"')
    with run_pusherd(on_a):
        pass  # stopped cleanly: its lease is gone with it
    with run_pusherd(on_b):
        # Now "b" is the prefix's channel, and "a" is the one refused.
        result = _start_refused(tmp_path, on_a)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "bus channel 'a'" in result.stderr and "use bus channel 'b'" in result.stderr
