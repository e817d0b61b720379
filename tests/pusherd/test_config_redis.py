"""The [redis] table and the environment that turns scaling on (Reverb's and Laravel's
names included), validated with the key named and the password never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from pusherd.config import RedisConfig, load_config, load_redis_config, redact_redis_url
from pusherd.errors import ConfigError


def _error(section: dict[str, object], env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_redis_config(section, env)
    return caught.value


def test_no_redis_anywhere_means_the_in_memory_adapter() -> None:
    config = load_redis_config({}, {"REDIS_HOST": "10.0.0.1", "REDIS_PASSWORD": "pw"})
    # Laravel apps set REDIS_* for their cache and queues: that alone must not scale.
    assert not config.enabled
    assert (config.prefix, config.channel, config.lease_ttl) == ("pusherd", "bus", 10.0)


def test_the_file_sets_url_prefix_lease_and_buffer() -> None:
    config = load_redis_config({"url": "redis://127.0.0.1:6379/2", "prefix": "prod",
                                "lease_ttl": 5, "max_buffered_bytes": 1024}, {})
    assert config.enabled and config.url == "redis://127.0.0.1:6379/2"
    assert (config.prefix, config.lease_ttl, config.max_buffered_bytes) == ("prod", 5.0, 1024)


def test_frame_interval_defaults_to_5_ms_and_is_bounded() -> None:
    assert load_redis_config({}, {}).frame_interval == 0.005
    assert load_redis_config({"url": "redis://h", "frame_interval": 0}, {}).frame_interval == 0
    for bad in (-0.001, 1.5, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="redis.frame_interval"):
            load_redis_config({"url": "redis://h", "frame_interval": bad}, {})


@pytest.mark.parametrize("key", ["lease_ttl", "reap_interval", "frame_interval"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nan_and_inf_from_toml_are_refused_naming_the_key(key: str, value: str) -> None:
    # TOML writes them bare; nan compares false with every bound, so it used to pass the
    # checks and silently disable the reaper (reap_interval) or crash the start (lease_ttl).
    import tomllib
    section = tomllib.loads(f'url = "redis://h"\n{key} = {value}\n')
    with pytest.raises(ConfigError, match=f"redis.{key}"):
        load_redis_config(section, {})


def test_pusherd_redis_url_overrides_the_file() -> None:
    config = load_redis_config({"url": "redis://file:6379"},
                               {"PUSHERD_REDIS_URL": "rediss://env.example:6380/1"})
    assert config.url == "rediss://env.example:6380/1"


def test_reverb_scaling_builds_the_url_from_laravel_redis_variables() -> None:
    env = {"REVERB_SCALING_ENABLED": "true", "REDIS_HOST": "10.1.2.3", "REDIS_PORT": "6380",
           "REDIS_USERNAME": "app", "REDIS_PASSWORD": "p@ss:w/rd", "REDIS_DB": "4",
           "REVERB_SCALING_CHANNEL": "reverb"}
    config = load_redis_config({}, env)
    assert config.url == "redis://app:p%40ss%3Aw%2Frd@10.1.2.3:6380/4"
    assert config.channel == "reverb"
    assert load_redis_config({}, {"REVERB_SCALING_ENABLED": "true"}).url == \
        "redis://127.0.0.1:6379/0"
    # Laravel's .env writes an absent password as the word null.
    assert load_redis_config({}, {"REVERB_SCALING_ENABLED": "true",
                                  "REDIS_PASSWORD": "null"}).url == "redis://127.0.0.1:6379/0"


def test_redis_url_keeps_its_own_parts_and_takes_the_missing_ones_from_the_variables() -> None:
    base = {"REVERB_SCALING_ENABLED": "1", "REDIS_PASSWORD": "secret", "REDIS_DB": "3"}
    assert load_redis_config({}, {**base, "REDIS_URL": "rediss://cache.example:6380"}).url \
        == "rediss://:secret@cache.example:6380/3"
    assert load_redis_config({}, {**base, "REDIS_URL": "redis://u:own@h:1/2"}).url \
        == "redis://u:own@h:1/2"


def test_reverb_scaling_disabled_leaves_redis_off() -> None:
    assert not load_redis_config({}, {"REVERB_SCALING_ENABLED": "false",
                                      "REDIS_URL": "redis://h"}).enabled


@pytest.mark.parametrize(("section", "env", "key", "shown"), [
    ({"url": "http://h"}, {}, "redis.url", "http://h"),
    ({"url": "redis://"}, {}, "redis.url", "no host"),
    ({"url": "redis://h:99999"}, {}, "redis.url", "0..65535"),
    ({"url": "redis://h/db2"}, {}, "redis.url", "must be a number"),
    ({}, {"PUSHERD_REDIS_URL": "memcached://h"}, "PUSHERD_REDIS_URL", "memcached://h"),
    ({}, {"REVERB_SCALING_ENABLED": "maybe"}, "REVERB_SCALING_ENABLED", "maybe"),
    ({}, {"REVERB_SCALING_ENABLED": "true", "REDIS_PORT": "x"}, "REDIS_PORT", "'x'"),
    ({}, {"REVERB_SCALING_ENABLED": "true", "REDIS_DB": "abc"}, "REDIS_DB", "'abc'"),
    ({}, {"REVERB_SCALING_ENABLED": "true", "REDIS_URL": "redis://h", "REDIS_DB": "x1"},
     "REDIS_DB", "'x1'"),
    ({}, {"PUSHERD_REDIS_PREFIX": "a b"}, "PUSHERD_REDIS_PREFIX", "'a b'"),
    ({}, {"REVERB_SCALING_CHANNEL": "a*"}, "REVERB_SCALING_CHANNEL", "'a*'"),
    ({"prefix": ""}, {}, "redis.prefix", "non-empty"),
    ({"prefix": "a b"}, {}, "redis.prefix", "'a b'"),
    ({"lease_ttl": 0.5}, {}, "redis.lease_ttl", "at least 1 second"),
    ({"reap_interval": 0}, {}, "redis.reap_interval", "> 0"),
    ({"surprise": 1}, {}, "redis.surprise", "unknown key"),
    ({"url": 5}, {}, "redis.url", "expected a string"),
])
def test_a_bad_redis_setting_is_refused_naming_its_key(
        section: dict[str, object], env: dict[str, str], key: str, shown: str) -> None:
    error = _error(section, env)
    assert error.key == key
    assert shown in str(error)


def test_a_password_never_appears_in_an_error_or_a_repr() -> None:
    error = _error({"url": "redis://user:hunter2@h:99999"}, {})
    assert "hunter2" not in str(error) and "***" in str(error)
    config = load_redis_config({"url": "redis://user:hunter2@h:6379"}, {})
    assert "hunter2" not in repr(config)
    assert config.redacted_url() == "redis://user:***@h:6379"
    assert redact_redis_url("rediss://:pw@[::1]:6380/1") == "rediss://:***@[::1]:6380/1"
    assert redact_redis_url("redis://h:6379") == "redis://h:6379"
    # redis-py also takes the password as a query parameter (found by a reviewer: it was
    # logged and printed in the banner as given)
    assert redact_redis_url("redis://127.0.0.1:6379/0?password=s3cr3tPW") == \
        "redis://127.0.0.1:6379/0?password=***"
    assert redact_redis_url("unix:///tmp/r.sock?db=2&password=unixPW77&x=1") == \
        "unix:///tmp/r.sock?db=2&password=***&x=1"
    assert redact_redis_url("redis://u:pw@h/1?Password=q") == "redis://u:***@h/1?Password=***"


def test_the_config_is_frozen() -> None:
    config = load_redis_config({}, {})
    assert isinstance(config, RedisConfig)
    with pytest.raises(AttributeError):
        config.prefix = "x"  # type: ignore[misc]


def test_laravel_env_forms_reverb_accepts_are_read_as_laravel_reads_them() -> None:
    on = {"REVERB_SCALING_ENABLED": "(true)"}  # Laravel's env() reads "(true)" as true
    # phpredis's tls:// scheme is TLS: rediss:// here.
    assert load_redis_config({}, {**on, "REDIS_URL": "tls://cache.example:6380"}).url == \
        "rediss://cache.example:6380"
    assert load_redis_config({}, {**on, "REDIS_URL": "TLS://h:6380", "REDIS_PASSWORD": "pw",
                                  "REDIS_DB": "2"}).url == "rediss://:pw@h:6380/2"
    # "null" is no user name, as it is no password.
    assert load_redis_config({}, {**on, "REDIS_USERNAME": "null", "REDIS_PASSWORD": "pw"}
                             ).url == "redis://:pw@127.0.0.1:6379/0"
    assert load_redis_config({}, {**on, "REDIS_USERNAME": "(null)"}).url == \
        "redis://127.0.0.1:6379/0"
    assert load_redis_config({}, {**on, "REDIS_URL": "null", "REDIS_HOST": "h"}).url == \
        "redis://h:6379/0"
    assert not load_redis_config({}, {"REVERB_SCALING_ENABLED": "(false)"}).enabled


def test_a_scaling_channel_separates_the_keys_too_unless_a_prefix_is_set() -> None:
    on = {"REVERB_SCALING_ENABLED": "true"}
    staging = load_redis_config({}, {**on, "REVERB_SCALING_CHANNEL": "staging"})
    production = load_redis_config({}, {**on, "REVERB_SCALING_CHANNEL": "production"})
    # Two deployments told apart by their channel share neither the bus nor any key.
    assert (staging.prefix, staging.channel) == ("pusherd-staging", "staging")
    assert (production.prefix, production.channel) == ("pusherd-production", "production")
    # The file's channel counts the same way; the default channel keeps the default prefix.
    assert load_redis_config({"channel": "blue"}, {}).prefix == "pusherd-blue"
    assert load_redis_config({"channel": "bus"}, {}).prefix == "pusherd"
    # An explicit prefix (the file's, or PUSHERD_REDIS_PREFIX over it) is kept as it is.
    assert load_redis_config({"prefix": "app1"}, {"REVERB_SCALING_CHANNEL": "x"}).prefix == \
        "app1"
    assert load_redis_config({"prefix": "app1"}, {"PUSHERD_REDIS_PREFIX": "app2"}).prefix == \
        "app2"
    assert load_redis_config({}, {**on, "REVERB_SCALING_CHANNEL": "x",
                                  "PUSHERD_REDIS_PREFIX": "mine"}).prefix == "mine"


def test_the_example_config_leaves_the_prefix_to_the_channel() -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    env = {"REVERB_SCALING_ENABLED": "true", "REVERB_SCALING_CHANNEL": "staging"}
    assert load_config(example, env).redis.prefix == "pusherd-staging"
    assert load_config(example, {}).redis.prefix == "pusherd"


def test_a_reap_interval_longer_than_the_lease_is_warned_about_with_the_bound(
        tmp_path: Path) -> None:
    config_file = tmp_path / "pusherd.toml"
    config_file.write_text('[redis]\nurl = "redis://127.0.0.1:6379/0"\nlease_ttl = 10\n'
                           "reap_interval = 600\n")
    warnings = load_config(config_file, {}).warnings
    assert len(warnings) == 1
    assert "reap_interval (600 s) is longer than lease_ttl (10 s)" in warnings[0]
    assert "610 s" in warnings[0]
    config_file.write_text('[redis]\nurl = "redis://127.0.0.1:6379/0"\nlease_ttl = 10\n'
                           "reap_interval = 10\n")
    assert load_config(config_file, {}).warnings == ()


def test_reverb_scaling_alone_keeps_the_files_url_and_says_so(tmp_path: Path) -> None:
    config_file = tmp_path / "pusherd.toml"
    config_file.write_text('[redis]\nurl = "redis://:hunter2@127.0.0.1:16399/0"\n')
    on = {"REVERB_SCALING_ENABLED": "true"}
    config = load_config(config_file, on)
    # No REDIS_* variable describes a server: they fill nothing, the file's URL stays.
    assert config.redis.url == "redis://:hunter2@127.0.0.1:16399/0"
    assert config.redis_source == "redis.url"
    assert len(config.notices) == 1
    assert "config file's [redis] url (redis://:***@127.0.0.1:16399/0)" in config.notices[0]
    assert "REVERB_SCALING_ENABLED is set without REDIS_URL, REDIS_HOST" in config.notices[0]
    # Laravel's null is no value: still nothing that describes a server.
    assert load_config(config_file, {**on, "REDIS_PASSWORD": "null"}).redis.url == \
        "redis://:hunter2@127.0.0.1:16399/0"
    # Without the flag the file's URL is used with nothing to say.
    assert load_config(config_file, {}).notices == ()


@pytest.mark.parametrize(("env", "source", "url"), [
    ({"REVERB_SCALING_ENABLED": "true", "REDIS_HOST": "10.0.0.7", "REDIS_PASSWORD": "pw"},
     "REDIS_HOST", "redis://:***@10.0.0.7:6379/0"),
    ({"REVERB_SCALING_ENABLED": "true", "REDIS_URL": "redis://cache:6380/1"},
     "REDIS_URL", "redis://cache:6380/1"),
    ({"PUSHERD_REDIS_URL": "redis://env:6381/2"}, "PUSHERD_REDIS_URL", "redis://env:6381/2"),
])
def test_the_environment_replacing_the_files_url_is_said_with_both_urls(
        tmp_path: Path, env: dict[str, str], source: str, url: str) -> None:
    config_file = tmp_path / "pusherd.toml"
    config_file.write_text('[redis]\nurl = "redis://:hunter2@127.0.0.1:16399/0"\n')
    config = load_config(config_file, env)
    assert redact_redis_url(config.redis.url) == url
    assert config.redis_source == source
    assert config.notices == (
        "[redis] url of the config file (redis://:***@127.0.0.1:16399/0) is ignored: "
        f"{source} gives Redis {url}"
        + (" (REVERB_SCALING_ENABLED)" if source != "PUSHERD_REDIS_URL" else ""),)
    assert "hunter2" not in config.notices[0] and ":pw@" not in config.notices[0]


def test_reverb_scaling_without_a_file_url_uses_laravels_defaults_quietly() -> None:
    config = load_config(None, {"REVERB_SCALING_ENABLED": "true"})
    assert config.redis.url == "redis://127.0.0.1:6379/0"
    assert config.redis_source == "REDIS_HOST" and config.notices == ()


def test_the_bus_channel_names_a_database_other_than_0() -> None:
    # Pub/sub ignores the database number: deployments on /1 and /2 with one prefix must
    # not share a bus.
    def bus(url: str, **options: str) -> str:
        return RedisConfig(url=url, **options).bus

    assert bus("redis://h:6379") == "pusherd:bus"
    assert bus("redis://h:6379/0") == "pusherd:bus"
    assert bus("redis://h:6379/3", prefix="p", channel="c") == "p:c@db3"
    assert bus("unix:///tmp/r.sock?db=2") == "pusherd:bus@db2"
    assert bus("rediss://:pw@h/4") == "pusherd:bus@db4"


def test_a_channel_with_a_colon_or_an_at_sign_is_refused() -> None:
    # Prefix "p" with channel "x:bus" would share the bus "p:x:bus" of prefix "p:x" (a
    # reviewer's finding); "@" is the bus's database suffix.
    for bad in ("x:bus", "bus@db1"):
        error = _error({"url": "redis://h", "channel": bad}, {})
        assert error.key == "redis.channel" and "must not contain ':' or '@'" in str(error)
        error = _error({"url": "redis://h"}, {"REVERB_SCALING_CHANNEL": bad})
        assert error.key == "REVERB_SCALING_CHANNEL"
    assert load_redis_config({"url": "redis://h", "prefix": "team:app"}, {}).bus == \
        "team:app:bus"


def test_a_lease_ttl_beyond_an_hour_is_refused() -> None:
    assert load_redis_config({"url": "redis://h", "lease_ttl": 3600}, {}).lease_ttl == 3600
    assert _error({"url": "redis://h", "lease_ttl": 1e300}, {}).key == "redis.lease_ttl"
