"""The app registry: finds a loaded :class:`~pusherd.core.app.App` by id or by key.

Apps are isolated: every piece of channel state is kept per app, and each app's secret
signs for that app only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pusherd.core.app import App, Webhook

__all__ = ["App", "AppRegistry", "Webhook"]


class AppRegistry:
    """Finds apps by id (HTTP API paths) and by key (WebSocket paths, ``auth_key``)."""

    def __init__(self, apps: Iterable[App]) -> None:
        self._by_id: dict[str, App] = {}
        self._by_key: dict[str, App] = {}
        for app in apps:
            self._by_id[app.id] = app
            self._by_key[app.key] = app

    def by_id(self, app_id: str) -> App | None:
        """The app whose id is `app_id` (HTTP API paths, §12), or None."""
        return self._by_id.get(app_id)

    def by_key(self, key: str) -> App | None:
        """The app whose key is `key` (WebSocket path, ``auth_key``), or None."""
        return self._by_key.get(key)

    def __iter__(self) -> Iterator[App]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
