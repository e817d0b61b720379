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
    assert caught.value.key == "server.tls.key_file"
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"PUSHERD_TLS_CERT_FILE": str(cert),
                           "PUSHERD_TLS_KEY_FILE": str(tmp_path / "absent.pem")})
    assert caught.value.key == "server.tls.key_file" and "absent.pem" in str(caught.value)


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
