"""What a browser needs to open its Echo connection: `GET /api/realtime/config`."""

from __future__ import annotations

from typing import Any

from ..context import Ctx
from ..web import Req


def realtime_config(ctx: Ctx, req: Req) -> Any:
    """Echo options for the web frontend (public: the app key is public by design, the secret
    never leaves the server). `enabled` is false when no pusherd app is configured; the page
    then keeps to polling. Shape: `{enabled, broadcaster, key, wsHost, wsPort, scheme,
    authEndpoint}`; `wsHost`/`wsPort`/`scheme` are where browsers reach pusherd
    (`ATTENDANCE_ECHO_HOST`/`_PORT`/`_SCHEME`, by default the `PUSHER_*` address)."""
    echo = ctx.runtime.config.echo_address()
    if echo is None:
        return {"enabled": False, "broadcaster": "reverb", "authEndpoint": "/broadcasting/auth"}
    host, port, scheme, key = echo
    return {
        "enabled": True,
        "broadcaster": "reverb",
        "key": key,
        "wsHost": host,
        "wsPort": port,
        "scheme": scheme,
        "authEndpoint": "/broadcasting/auth",
    }
