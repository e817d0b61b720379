"""``[webhooks]`` and the webhook filters in the config file (docs/webhooks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pusherd.config import WebhooksConfig, load_config
from pusherd.errors import ConfigError

APP = '[[apps]]\nid = "1"\nkey = "k"\nsecret = "s"\n'


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "pusherd.toml"
    path.write_text(text)
    return load_config(path, env or {})


def test_the_defaults_follow_hosted_pusher_and_the_journal_lives_in_the_state_dir(
        tmp_path: Path) -> None:
    config = load_config(None, {"XDG_STATE_HOME": str(tmp_path)})
    hooks = config.webhooks
    assert (hooks.grace, hooks.retry_window, hooks.batch_window) == (3.0, 300.0, 0.0)
    assert hooks.journal == str(tmp_path / "pusherd" / "webhooks.journal")


def test_every_key_of_the_section_is_read_and_an_empty_journal_means_memory(
        tmp_path: Path) -> None:
    config = _load(tmp_path, '[webhooks]\njournal = ""\ngrace = 0\nbatch_window = 0.05\n'
                   'batch_max = 10\nretry_window = 60\nretry_base = 0.5\nretry_max = 5\n'
                   'timeout = 2\nconcurrency = 8\nmax_pending = 10\nmax_failed = 3\n'
                   'fsync_interval = 0.5\n' + APP + '[[apps.webhooks]]\nurl = "http://h/x"\n'
                   'filter_channel_suffix = "-room"\n')
    assert config.webhooks == WebhooksConfig(  # type: ignore[attr-defined]
        journal="", grace=0.0, batch_window=0.05, batch_max=10, retry_window=60.0,
        retry_base=0.5, retry_max=5.0, timeout=2.0, concurrency=8, max_pending=10,
        max_failed=3, fsync_interval=0.5)
    assert config.apps[0].webhooks[0].filter_channel_suffix == "-room"  # type: ignore


@pytest.mark.parametrize(("text", "key"), [
    ("[webhooks]\ngrace = -1\n", "webhooks.grace"),
    ("[webhooks]\nconcurrency = 0\n", "webhooks.concurrency"),
    ("[webhooks]\nretry_window = \"long\"\n", "webhooks.retry_window"),
    ("[webhooks]\nretries = 3\n", "webhooks.retries"),
    ("webhooks = 3\n", "webhooks"),
])
def test_a_bad_webhooks_setting_is_named(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert caught.value.key == key
