"""Every environment name Laravel Reverb's config/reverb.php reads is honoured with the same
meaning or refused at start naming it; --help lists them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from pusherd.config import Config, load_config
from pusherd.environment import ENVIRONMENT
from pusherd.errors import ConfigError
from tests.support.pusherd_process import REPO_ROOT

APP_ENV = {"REVERB_APP_ID": "555", "REVERB_APP_KEY": "reverb-key",
           "REVERB_APP_SECRET": "reverb-secret"}

# The names Reverb's config/reverb.php reads with env() (its current release).
REVERB_NAMES = (
    "REVERB_SERVER", "REVERB_SERVER_HOST", "REVERB_SERVER_PORT", "REVERB_SERVER_PATH",
    "REVERB_HOST", "REVERB_MAX_REQUEST_SIZE", "REVERB_SCALING_ENABLED",
    "REVERB_SCALING_CHANNEL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME",
    "REDIS_PASSWORD", "REDIS_DB", "REDIS_TIMEOUT", "REVERB_PULSE_INGEST_INTERVAL",
    "REVERB_TELESCOPE_INGEST_INTERVAL", "REVERB_APP_KEY", "REVERB_APP_SECRET",
    "REVERB_APP_ID", "REVERB_PORT", "REVERB_SCHEME", "REVERB_APP_PING_INTERVAL",
    "REVERB_APP_ACTIVITY_TIMEOUT", "REVERB_APP_MAX_CONNECTIONS",
    "REVERB_APP_MAX_MESSAGE_SIZE", "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
    "REVERB_APP_RATE_LIMITING_ENABLED", "REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS",
    "REVERB_APP_RATE_LIMIT_DECAY_SECONDS", "REVERB_APP_RATE_LIMIT_TERMINATE",
)


def _load(env: dict[str, str]) -> Config:
    return load_config(None, env)


def _refused(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _load(env)
    return caught.value


def _env_app(config: Config) -> object:
    return next(app for app in config.apps if app.id == "555")


HONOURED = {
    "REVERB_SERVER_HOST": ({"REVERB_SERVER_HOST": "0.0.0.0"},
                           lambda c: c.server.host == "0.0.0.0"),
    "REVERB_SERVER_PORT": ({"REVERB_SERVER_PORT": "6001"}, lambda c: c.server.port == 6001),
    "REVERB_SERVER_PATH": ({"REVERB_SERVER_PATH": "realtime/"},
                           lambda c: c.server.path_prefix == "/realtime"),
    "REVERB_MAX_REQUEST_SIZE": ({"REVERB_MAX_REQUEST_SIZE": "10_000"},
                                lambda c: c.server.max_request_size == 10_000),
    "REVERB_APP_ACTIVITY_TIMEOUT": ({"REVERB_APP_ACTIVITY_TIMEOUT": "30"},
                                    lambda c: c.server.activity_timeout == 30),
    "REVERB_APP_PING_INTERVAL": ({"REVERB_APP_ACTIVITY_TIMEOUT": "30",
                                  "REVERB_APP_PING_INTERVAL": "60"},
                                 lambda c: c.server.activity_timeout + c.server.ping_grace == 60),
    "REVERB_APP_MAX_MESSAGE_SIZE": ({"REVERB_APP_MAX_MESSAGE_SIZE": "10000"},
                                    lambda c: c.server.max_message_size == 10_000),
    "REVERB_APP_MAX_CONNECTIONS": ({**APP_ENV, "REVERB_APP_MAX_CONNECTIONS": "7"},
                                   lambda c: _env_app(c).max_connections == 7),  # type: ignore[attr-defined]
    "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM": (
        {**APP_ENV, "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM": "none"},
        lambda c: _env_app(c).enable_client_events is False),  # type: ignore[attr-defined]
    "REVERB_HOST": ({"REVERB_HOST": "ws.example.com", "REVERB_PORT": "443",
                     "REVERB_SCHEME": "https"},
                    lambda c: c.public_url == "https://ws.example.com:443"),
    "REVERB_SERVER": ({"REVERB_SERVER": "reverb"}, lambda c: True),
    "REVERB_SCALING_ENABLED": ({"REVERB_SCALING_ENABLED": "true", "REDIS_HOST": "10.0.0.5",
                                "REDIS_PORT": "6380", "REDIS_DB": "2"},
                               lambda c: c.redis.url == "redis://10.0.0.5:6380/2"),
    "REVERB_SCALING_CHANNEL": ({"REVERB_SCALING_ENABLED": "true",
                                "REVERB_SCALING_CHANNEL": "chan"},
                               lambda c: c.redis.channel == "chan"),
    "REVERB_APP_ID": (APP_ENV, lambda c: _env_app(c).key == "reverb-key"),  # type: ignore[attr-defined]
    "REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS": (
        # Like Reverb: without REVERB_APP_RATE_LIMITING_ENABLED the limits do nothing.
        {"REVERB_APP_RATE_LIMITING_ENABLED": "false", "REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS": "5"},
        lambda c: True),
}

REFUSED = {
    "REVERB_SERVER": {"REVERB_SERVER": "pusher"},
    "REVERB_PULSE_INGEST_INTERVAL": {"REVERB_PULSE_INGEST_INTERVAL": "15"},
    "REVERB_TELESCOPE_INGEST_INTERVAL": {"REVERB_TELESCOPE_INGEST_INTERVAL": "15"},
    "REVERB_APP_RATE_LIMITING_ENABLED": {"REVERB_APP_RATE_LIMITING_ENABLED": "true"},
    "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM": {**APP_ENV,
                                             "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM": "all"},
    "REVERB_APP_MAX_CONNECTIONS": {**APP_ENV, "REVERB_APP_MAX_CONNECTIONS": "lots"},
    "REDIS_TIMEOUT": {"REVERB_SCALING_ENABLED": "true", "REDIS_TIMEOUT": "60"},
}


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_a_reverb_name_is_honoured_with_reverbs_meaning(name: str) -> None:
    env, check = HONOURED[name]
    assert check(_load(env))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_reverb_setting_pusherd_cannot_honour_is_refused_naming_it(name: str) -> None:
    error = _refused(REFUSED[name])
    assert error.key == name
    assert len(str(error)) > len(name) + 30  # says why, not just the name


def test_without_scaling_laravels_own_redis_names_are_none_of_ours() -> None:
    # Laravel's cache and queue read REDIS_*; Reverb reads them only with scaling on.
    assert _load({"REDIS_HOST": "10.0.0.5", "REDIS_TIMEOUT": "5"}).redis.url == ""


def test_every_reverb_name_is_listed_by_help_or_covered_by_a_listed_group() -> None:
    listed = " ".join(var.name + " " + var.meaning for var in ENVIRONMENT)
    for name in REVERB_NAMES:
        covered = name in listed or (name.startswith("REVERB_APP_RATE_LIMIT_")
                                     and "REVERB_APP_RATE_LIMIT_*" in listed)
        if name == "REDIS_TIMEOUT":
            covered = "REDIS_" in listed  # read with the Redis URL, by the Redis adapter
        assert covered, name


def test_each_reverb_name_is_either_honoured_or_refused_by_a_test() -> None:
    # REVERB_PORT/SCHEME go with REVERB_HOST, KEY/SECRET with ID, REDIS_* with
    # REVERB_SCALING_ENABLED (and the config tests of [redis]).
    tested = set(HONOURED) | set(REFUSED) | {"REVERB_PORT", "REVERB_SCHEME", "REVERB_APP_KEY",
                                             "REVERB_APP_SECRET"}
    redis_names = {n for n in REVERB_NAMES if n.startswith("REDIS_")}
    rate_limits = {n for n in REVERB_NAMES if n.startswith("REVERB_APP_RATE_LIMIT_")}
    assert set(REVERB_NAMES) - tested - redis_names - rate_limits == set()


async def test_help_lists_the_environment_variables() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pusherd", "--help", cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    text = stdout.decode()
    for name in ("REVERB_APP_MAX_CONNECTIONS", "REVERB_SCALING_ENABLED", "PUSHERD_APP_SECRET",
                 "--log-format", "--debug", "REVERB_SERVER_PATH"):
        assert name in text


def test_tls_files_must_exist_and_come_in_pairs(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"PUSHERD_TLS_CERT_FILE": str(cert)})
    # Named as the user set them: the variables, not the config keys.
    assert caught.value.key == "PUSHERD_TLS_KEY_FILE"
    assert "PUSHERD_TLS_CERT_FILE is set" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"PUSHERD_TLS_CERT_FILE": str(cert),
                           "PUSHERD_TLS_KEY_FILE": str(tmp_path / "absent.pem")})
    assert caught.value.key == "PUSHERD_TLS_KEY_FILE" and "absent.pem" in str(caught.value)


def test_the_console_needs_a_real_token(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[console]\nenabled = true\ntoken = "short"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.key == "console.token" and "short" not in str(caught.value)


def test_reverbs_tls_names_local_cert_and_local_pk_are_accepted(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("y")
    path = tmp_path / "p.toml"
    path.write_text(f'[server.tls]\nlocal_cert = "{cert}"\nlocal_pk = "{key}"\n')
    tls = load_config(path, {}).tls
    assert (tls.cert_file, tls.key_file, tls.enabled) == (str(cert), str(key), True)


def test_a_bad_redis_url_is_refused_without_its_password() -> None:
    error = _refused({"REVERB_SCALING_ENABLED": "true",
                      "REDIS_URL": "http://admin:Hunter2-secret@cache:6379/0"})
    assert error.key == "REDIS_URL"
    assert "Hunter2-secret" not in str(error) and "cache:6379" in str(error)


FILE_APP = '''
[[apps]]
id = "4242"
key = "opskey"
secret = "placeholder-secret"
allowed_origins = ["https://app.example.com"]
max_connections = 100
max_client_events_per_second = 3

[[apps.webhooks]]
url = "http://127.0.0.1:9/hook"
'''


def test_credentials_from_the_environment_complete_the_file_app_with_that_id_and_key(
    tmp_path: Path,
) -> None:
    """App settings in the file, credentials in the environment file: the environment
    sets the secret (and only what it sets); origins, limits and webhooks stay."""
    path = tmp_path / "apps.toml"
    path.write_text(FILE_APP)
    config = load_config(path, {"REVERB_APP_ID": "4242", "REVERB_APP_KEY": "opskey",
                                "REVERB_APP_SECRET": "RealSecretFromEnvFile"})
    (app,) = config.apps
    assert app.secret == "RealSecretFromEnvFile"
    assert app.allowed_origins == ("https://app.example.com",)
    assert (app.max_connections, app.max_client_events_per_second) == (100, 3)
    assert [hook.url for hook in app.webhooks] == ["http://127.0.0.1:9/hook"]
    (notice,) = config.notices
    assert "apps[0]" in notice and "REVERB_APP_SECRET" in notice
    assert "RealSecretFromEnvFile" not in notice

    config = load_config(path, {"PUSHERD_APP_ID": "4242", "PUSHERD_APP_KEY": "opskey",
                                "PUSHERD_APP_SECRET": "RealSecretFromEnvFile",
                                "REVERB_APP_MAX_CONNECTIONS": "5",
                                "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM": "none"})
    (app,) = config.apps
    assert (app.max_connections, app.enable_client_events) == (5, False)
    assert app.allowed_origins == ("https://app.example.com",) and app.webhooks
    assert "REVERB_APP_MAX_CONNECTIONS" in config.notices[0]


@pytest.mark.parametrize(("env", "named", "clash"), [
    ({"REVERB_APP_ID": "4242", "REVERB_APP_KEY": "otherkey"}, "REVERB_APP_ID", "'opskey'"),
    ({"REVERB_APP_ID": "78", "REVERB_APP_KEY": "opskey"}, "REVERB_APP_KEY", "'4242'"),
])
def test_an_environment_app_that_half_matches_a_file_app_is_refused(
    tmp_path: Path, env: dict[str, str], named: str, clash: str,
) -> None:
    path = tmp_path / "apps.toml"
    path.write_text(FILE_APP)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {**env, "REVERB_APP_SECRET": "zzzzzzzzzzzz"})
    message = str(caught.value)
    assert caught.value.key == named
    # Both sources are named: the variables and the file's entry.
    assert "apps[0]" in message and clash in message and "config file" in message
    assert "REVERB_APP_ID" in message and "REVERB_APP_KEY" in message


@pytest.mark.parametrize("value", ["bogus", "member", "true", "memebers"])
def test_an_unknown_accept_client_events_from_is_refused_naming_the_accepted_values(
    value: str,
) -> None:
    error = _refused({**APP_ENV, "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM": value})
    assert error.key == "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM"
    assert "members" in str(error) and "none" in str(error) and repr(value) in str(error)
    # Case and spaces do not matter, as before.
    assert _env_app(_load({**APP_ENV, "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM": " Members "})
                    ).enable_client_events is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_ping_interval_that_is_not_positive_is_refused(value: str) -> None:
    error = _refused({"REVERB_APP_PING_INTERVAL": value})
    assert error.key == "REVERB_APP_PING_INTERVAL" and "> 0" in str(error)


@pytest.mark.parametrize(("env", "named"), [
    ({"REVERB_APP_ACTIVITY_TIMEOUT": "0"}, "REVERB_APP_ACTIVITY_TIMEOUT"),
    ({"REVERB_APP_MAX_MESSAGE_SIZE": "-1"}, "REVERB_APP_MAX_MESSAGE_SIZE"),
    ({"PUSHERD_PORT": "70000"}, "PUSHERD_PORT"),
    ({"REVERB_SERVER_PORT": "70000"}, "REVERB_SERVER_PORT"),
    ({"PUSHERD_METRICS_PORT": "70000"}, "PUSHERD_METRICS_PORT"),
    ({"PUSHERD_CONSOLE_TOKEN": "short"}, "PUSHERD_CONSOLE_TOKEN"),
    ({**APP_ENV, "REVERB_APP_MAX_CONNECTIONS": "-1"}, "REVERB_APP_MAX_CONNECTIONS"),
])
def test_an_error_in_an_environment_value_names_the_variable(
    env: dict[str, str], named: str,
) -> None:
    error = _refused(env)
    assert error.key == named, str(error)


def test_the_command_line_port_is_named_as_such_even_with_the_variable_set() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"PUSHERD_PORT": "8080"}, port=70000)
    assert caught.value.key == "server.port"


def test_unknown_pusherd_and_reverb_variables_are_named_in_a_warning() -> None:
    config = _load({"PUSHERD_LOGS": "debug", "REVERB_APP_MAX_CONECTIONS": "5",
                    "PUSHERD_REDIS_URl": "redis://x", "OTHER_THING": "1",
                    "REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS": "5"})
    text = "\n".join(config.warnings)
    assert "PUSHERD_LOGS" in text
    assert "REVERB_APP_MAX_CONECTIONS" in text and "did you mean REVERB_APP_MAX_CONNECTIONS" \
        in text
    assert "did you mean PUSHERD_REDIS_URL" in text
    assert "OTHER_THING" not in text and "RATE_LIMIT" not in text
    assert len(config.warnings) == 3
    # Every name --help lists (and every name Reverb reads) is known.
    listed = {n.strip() for var in ENVIRONMENT for n in var.name.split(",")}
    assert _load({name: "" for name in listed | set(REVERB_NAMES)}).warnings == ()


def test_metrics_settings_that_contradict_each_other(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[metrics]\nenabled = false\nport = 18475\n")
    (warning,) = load_config(path, {}).warnings
    assert "metrics.port" in warning and "enabled" in warning
    path.write_text("[server]\nport = 18471\n[metrics]\nport = 18471\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.key == "metrics.port" and "server's port" in str(caught.value)
    path.write_text("[console]\ntoken = \"a-long-enough-token-here\"\n")
    (warning,) = load_config(path, {}).warnings
    assert "console" in warning
