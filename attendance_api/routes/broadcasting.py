"""Channel authorisation for pusher-js / Echo (`/broadcasting/auth`), signed with the pusher
SDK."""

from __future__ import annotations

from typing import Any

from ..context import ApiError, Ctx
from ..presence import PRESENCE_CHANNEL, presence_channel_data
from ..web import Req


def broadcasting_auth(ctx: Ctx, req: Req) -> Any:
    """Laravel's channel authorisation for pusher-js / Echo, signed with the pusher SDK:
    `private-user.{id}` only for that user, `private-admin.*` only for active admins,
    `presence-online` for every signed-in user (as themself: id and name)."""
    socket_id = req.body.get("socket_id", req.query.get("socket_id"))
    channel = req.body.get("channel_name", req.query.get("channel_name"))
    if not isinstance(socket_id, str) or not isinstance(channel, str):
        raise ApiError(403, "Forbidden.")
    user = ctx.user
    assert user is not None
    allowed = False
    custom_data = None
    if channel == PRESENCE_CHANNEL:
        allowed = True
        custom_data = presence_channel_data(user)
    elif channel.startswith("private-user."):
        allowed = channel == f"private-user.{user.id}"
    elif channel.startswith("private-admin."):
        allowed = (
            user.role == "admin"
            and user.status == "active"
            and channel in ("private-admin.dashboard", "private-admin.employees")
        )
    if not allowed:
        raise ApiError(403, "Forbidden.")
    client = ctx.runtime.auth_client()
    if client is None:
        raise ApiError(503, "Realtime is not configured.")
    try:
        return client.authenticate(channel=channel, socket_id=socket_id, custom_data=custom_data)
    except ValueError:
        raise ApiError(403, "Forbidden.") from None
