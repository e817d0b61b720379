"""Who is online: the presence channel's members, as pusherd's webhooks report them.

Clients join `presence-online` (authorised at `/broadcasting/auth` with the user's id and
name). pusherd sends `member_added` when a user's first socket joins and `member_removed`
(after its 3 s grace, so a page reload sends nothing) when the last one leaves; this module
turns them into `user_presence` rows, ignores events it has already processed (by the event
id pusherd puts in every event), and says which users changed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select

from .context import Ctx
from .models import User, UserPresence, WebhookEvent

PRESENCE_CHANNEL = "presence-online"
KEEP_EVENT_IDS = timedelta(days=7)  # far beyond pusherd's retry window (5 min by default)


def presence_channel_data(user: User) -> dict[str, Any]:
    """The presence member a user joins `presence-online` as (Laravel's shape: the user id,
    and the info other members see)."""
    return {"user_id": user.id,
            "user_info": {"id": user.id, "name": f"{user.first_name} {user.last_name}"}}


def apply_webhook_events(ctx: Ctx, events: list[Any]) -> list[User]:
    """Apply a validated webhook body's events; return the users whose online state changed
    (in event order, each once). Unknown event names, other channels, unknown users and ids
    already seen are skipped."""
    changed: dict[int, User] = {}
    seen_now: set[str] = set()
    ctx.db.execute(delete(WebhookEvent).where(WebhookEvent.received_at < ctx.now - KEEP_EVENT_IDS))
    for event in events:
        if not isinstance(event, dict):
            continue
        event_id = event.get("id")
        if isinstance(event_id, str) and event_id:
            event_id = event_id[:100]
            if event_id in seen_now or ctx.db.get(WebhookEvent, event_id) is not None:
                continue
            seen_now.add(event_id)
            ctx.db.add(WebhookEvent(id=event_id, received_at=ctx.now))
        name = event.get("name")
        if name not in ("member_added", "member_removed"):
            continue
        if event.get("channel") != PRESENCE_CHANNEL:
            continue
        raw_user = str(event.get("user_id", ""))
        if not raw_user.isdigit() or not 1 <= int(raw_user) <= 2**31 - 1:
            continue
        user = ctx.db.get(User, int(raw_user))
        if user is None or user.deleted_at is not None:
            continue
        online = name == "member_added"
        row = ctx.db.get(UserPresence, user.id)
        if row is None:
            row = UserPresence(user_id=user.id, online=not online, last_presence_at=ctx.now)
            ctx.db.add(row)
        row.last_presence_at = ctx.now
        if row.online != online:
            row.online = online
            changed[user.id] = user
    return list(changed.values())


def presence_of(ctx: Ctx, user_ids: list[int]) -> dict[int, UserPresence]:
    """The presence rows of `user_ids` (users never seen have none)."""
    if not user_ids:
        return {}
    rows = ctx.db.scalars(select(UserPresence).where(UserPresence.user_id.in_(user_ids))).all()
    return {row.user_id: row for row in rows}


def online_now_count(ctx: Ctx) -> int:
    """Active employees in the presence channel now."""
    return int(
        ctx.db.scalar(
            select(func.count(UserPresence.user_id))
            .join(User, User.id == UserPresence.user_id)
            .where(
                UserPresence.online.is_(True),
                User.role == "employee",
                User.status == "active",
                User.deleted_at.is_(None),
            )
        )
        or 0
    )
