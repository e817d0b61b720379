"""pusherd.config: TOML + environment, validated once, every error naming its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pusherd import cli
from pusherd.config import DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET, load_config
from pusherd.errors import ConfigError

FULL = """
[server]
host = "0.0.0.0"
port = 9090
activity_timeout = 30
ping_grace = 5
pong_timeout = 7.5
max_message_size = 20000
max_request_size = 50000
strict_protocol_version = true

[[apps]]
id = 1001
key = "key-one"
secret = "secret-one"
enable_client_events = false
enable_user_authentication = false
enable_subscription_count = true
max_connections = 50
allowed_origins = ["https://a.example", "*.b.example"]
max_presence_members = 10
max_presence_user_info_size = 512
max_event_data_size = 2048
max_client_events_per_second = 5

[[apps.webhooks]]
url = "http://127.0.0.1:9/hook"
event_types = ["channel_occupied", "member_added"]

[[apps]]
id = "app-two"
key = "key-two"
secret = "secret-two"

[redis]
prefix = "test"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pusherd.toml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), env or {})
    return caught.value


def test_a_full_config_file_is_read_into_frozen_settings(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL), {})
    server = config.server
    assert (server.host, server.port, server.activity_timeout) == ("0.0.0.0", 9090, 30)
    assert (server.ping_grace, server.pong_timeout) == (5.0, 7.5)
    assert (server.max_message_size, server.max_request_size) == (20000, 50000)
    assert server.strict_protocol_version is True
    one, two = config.apps
    assert one.id == "1001"  # a numeric id becomes its string form
    assert (one.key, one.secret) == ("key-one", "secret-one")
    assert not one.enable_client_events and one.enable_subscription_count
    assert not one.enable_user_authentication
    assert one.max_connections == 50
    assert one.allowed_origins == ("https://a.example", "*.b.example")
    assert (one.max_presence_members, one.max_presence_user_info_size) == (10, 512)
    assert (one.max_event_data_size, one.max_client_events_per_second) == (2048, 5)
    assert [(w.url, w.event_types) for w in one.webhooks] == [
        ("http://127.0.0.1:9/hook", ("channel_occupied", "member_added"))]
    assert (two.id, two.key) == ("app-two", "key-two")
    assert two.enable_client_events  # on by default (config.example.toml says why)
    assert (config.redis.url, config.redis.prefix) == ("", "test")
    assert not config.dev_app
    with pytest.raises(AttributeError):
        server.port = 1  # type: ignore[misc]


def test_a_redis_url_in_the_file_turns_scaling_on(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, '[redis]\nurl = "redis://127.0.0.1:6379/0"\n'), {})
    assert config.redis.enabled and config.redis.url == "redis://127.0.0.1:6379/0"


def test_encryption_master_key_base64_is_accepted_in_an_app_as_the_team_config_shows(
    tmp_path: Path,
) -> None:
    # The shared config contract lists this key under [[apps]] ("not used by the server;
    # for tests only"): a config written to that contract must load.
    config = load_config(_write(tmp_path, '[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n'
                                'encryption_master_key_base64 = ""\n'), {})
    assert [a.id for a in config.apps] == ["1"]


def test_an_encryption_master_key_that_is_not_32_bytes_of_base64_names_the_key(
    tmp_path: Path,
) -> None:
    error = _error(tmp_path, '[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n'
                             'encryption_master_key_base64 = "c2hvcnQ="\n')
    assert "apps[0].encryption_master_key_base64" in str(error)


def test_the_encryption_master_key_is_not_in_an_apps_repr(tmp_path: Path) -> None:
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    config = load_config(_write(tmp_path, '[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n'
                                f'encryption_master_key_base64 = "{key}"\n'), {})
    assert key not in repr(config)


def test_the_secret_is_not_in_an_apps_repr(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL), {})
    assert "secret-one" not in repr(config.apps[0])
    assert "secret-one" not in repr(config)


def test_no_config_serves_the_development_app_on_127_0_0_1_8080() -> None:
    config = load_config(None, {})
    assert config.dev_app
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    (app,) = config.apps
    assert (app.id, app.key, app.secret) == (DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET)
    assert (DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET) == ("1001", "app-key", "app-secret")


def test_command_line_host_and_port_override_file_and_environment(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL), {"PUSHERD_PORT": "7000"},
                         host="127.0.0.2", port=0)
    assert (config.server.host, config.server.port) == ("127.0.0.2", 0)


def test_pusherd_environment_overrides_the_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL), {"PUSHERD_HOST": "10.0.0.1",
                                                  "PUSHERD_PORT": "7000"})
    assert (config.server.host, config.server.port) == ("10.0.0.1", 7000)


def test_reverb_server_names_are_aliases() -> None:
    config = load_config(None, {"REVERB_SERVER_HOST": "0.0.0.0", "REVERB_SERVER_PORT": "6001"})
    assert (config.server.host, config.server.port) == ("0.0.0.0", 6001)


def test_pusherd_names_win_over_reverb_names() -> None:
    config = load_config(None, {"PUSHERD_PORT": "7000", "REVERB_SERVER_PORT": "6001"})
    assert config.server.port == 7000


def test_one_app_from_pusherd_environment_replaces_the_dev_app() -> None:
    config = load_config(None, {"PUSHERD_APP_ID": "77", "PUSHERD_APP_KEY": "env-key",
                                "PUSHERD_APP_SECRET": "env-secret"})
    assert not config.dev_app
    (app,) = config.apps
    assert (app.id, app.key, app.secret) == ("77", "env-key", "env-secret")


def test_one_app_from_a_laravel_env_with_reverb_names() -> None:
    config = load_config(None, {"REVERB_APP_ID": "555", "REVERB_APP_KEY": "rk",
                                "REVERB_APP_SECRET": "rs"})
    (app,) = config.apps
    assert (app.id, app.key, app.secret) == ("555", "rk", "rs")


def test_an_environment_app_is_added_to_the_file_apps(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL), {
        "PUSHERD_APP_ID": "77", "PUSHERD_APP_KEY": "env-key", "PUSHERD_APP_SECRET": "s"})
    assert [a.id for a in config.apps] == ["1001", "app-two", "77"]


def test_an_environment_app_without_its_secret_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"PUSHERD_APP_ID": "77", "PUSHERD_APP_KEY": "k"})
    assert "SECRET" in str(caught.value)


def test_a_non_numeric_port_in_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"PUSHERD_PORT": "eighty"})
    assert "PUSHERD_PORT" in str(caught.value) and "eighty" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ('[server]\nport = "80"\n', "server.port", "'80'"),
        ("[server]\nport = 70000\n", "server.port", "70000"),
        ("[server]\nport = true\n", "server.port", "True"),
        ("[server]\nactivity_timeout = 0\n", "server.activity_timeout", "0"),
        ("[server]\nmax_message_size = -1\n", "server.max_message_size", "-1"),
        ('[server]\nlog_level = "loud"\n', "server.log_level", "loud"),
        ('[server]\npath_prefix = "ws/"\n', "server.path_prefix", "ws/"),
        ('[server]\nhttp_path = "pusher"\n', "server.http_path", "pusher"),
        ("[server]\nfallback_session_timeout = 0\n", "server.fallback_session_timeout", "0"),
        ('[server]\nfallback_hostname = "a/b"\n', "server.fallback_hostname", "a/b"),
        ("[server]\nbogus = 1\n", "server.bogus", "unknown key"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\nmax_connections = -5\n',
         "apps[0].max_connections", "-5"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\nenable_client_events = "yes"\n',
         "apps[0].enable_client_events", "'yes'"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\nallowed_origins = "*"\n',
         "apps[0].allowed_origins", "'*'"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n'
         'allowed_origins = ["https://*.example.com"]\n',
         "apps[0].allowed_origins", "https://*.example.com"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\nmax_event_data_size = 0\n',
         "apps[0].max_event_data_size", "0"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\nwhat = 1\n', "apps[0].what",
         "unknown key"),
        ('[[apps]]\nid = "1"\nsecret = "s"\n', "apps[0].key", "None"),
        ('[[apps]]\nid = "1"\nkey = ""\nsecret = "s"\n', "apps[0].key", "''"),
        ('[[apps]]\nid = "1"\nkey = "a:b"\nsecret = "s"\n', "apps[0].key", "a:b"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n[[apps]]\nid = "1"\nkey = "k2"\n'
         'secret = "s"\n', "apps[1].id", "'1'"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n[[apps]]\nid = "2"\nkey = "k"\n'
         'secret = "s"\n', "apps[1].key", "'k'"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n[[apps.webhooks]]\nurl = "ftp://x"\n',
         "apps[0].webhooks[0].url", "ftp://x"),
        ('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n[[apps.webhooks]]\nurl = "http://x"\n'
         'event_types = ["channel_exploded"]\n', "apps[0].webhooks[0].event_types",
         "channel_exploded"),
        ('[redis]\nurl = "http://localhost"\n', "redis.url", "http://localhost"),
        ("[surprise]\nx = 1\n", "surprise", "unknown section"),
    ],
)
def test_a_bad_value_is_refused_with_its_key_and_value_named(
    tmp_path: Path, text: str, key: str, value: str
) -> None:
    error = _error(tmp_path, text)
    assert key in str(error)
    assert value in str(error)


def test_a_missing_secret_is_reported_without_showing_a_secret(tmp_path: Path) -> None:
    error = _error(tmp_path, '[[apps]]\nid = "1"\nkey = "k"\nsecret = 12345\n')
    assert "apps[0].secret" in str(error)
    assert "12345" not in str(error)


def test_invalid_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    error = _error(tmp_path, "[server\nport = 1\n")
    assert "pusherd.toml" in str(error)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml", {})
    assert "absent.toml" in str(caught.value)


def test_the_example_config_at_the_top_level_loads(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    config = load_config(example, {})
    assert [(a.id, a.key) for a in config.apps] == [("1001", "app-key")]
    assert not config.dev_app and config.redis.url == ""
    # Every key the example documents is a key the loader knows: it loaded, and it sets
    # the webhook table the issue asks to be parsed now.
    assert config.apps[0].webhooks[0].event_types == ("channel_occupied", "channel_vacated")


def test_client_events_have_one_default_for_file_environment_and_development_apps(
    tmp_path: Path,
) -> None:
    path = tmp_path / "apps.toml"
    path.write_text('[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n')
    from_file = load_config(path, {}).apps[0]
    from_env = load_config(None, {"REVERB_APP_ID": "2", "REVERB_APP_KEY": "k2",
                                  "REVERB_APP_SECRET": "s2"}).apps[0]
    development = load_config(None, {}).apps[0]
    assert from_file.enable_client_events is True
    assert from_env.enable_client_events is True
    assert development.enable_client_events is True


@pytest.mark.parametrize("override", [{"port": 0}, {"env": {"PUSHERD_PORT": "0"}}])
def test_an_override_does_not_hide_a_bad_value_in_the_file(
    tmp_path: Path, override: dict[str, Any]
) -> None:
    path = _write(tmp_path, '[server]\nport = "8082"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, override.get("env", {}), port=override.get("port"))
    assert "server.port" in str(caught.value) and "'8082'" in str(caught.value)


def test_the_command_line_refuses_a_bad_file_even_with_port_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, '[server]\nport = "8082"\n')
    assert cli.main(["--config", str(path), "--port", "0"]) == 2
    assert "server.port" in capsys.readouterr().err


def test_a_non_numeric_app_id_from_the_environment_gives_a_warning() -> None:
    config = load_config(None, {"REVERB_APP_ID": "abc", "REVERB_APP_KEY": "k",
                                "REVERB_APP_SECRET": "s"})
    assert config.apps[0].id == "abc"  # still served: pusher-js and node/PHP accept it
    assert len(config.warnings) == 1
    assert "REVERB_APP_ID='abc'" in config.warnings[0]
    assert "Python SDK" in config.warnings[0]
    numeric = load_config(None, {"REVERB_APP_ID": "123", "REVERB_APP_KEY": "k",
                                 "REVERB_APP_SECRET": "s"})
    assert numeric.warnings == ()
