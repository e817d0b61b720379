"""The signed-in user's notifications: the latest list, marking one or all as read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from ..context import Ctx
from ..models import Notification
from ..serialize import notification_json
from ..web import Req


def notifications_index(ctx: Ctx, req: Req) -> Any:
    rows = ctx.db.scalars(
        select(Notification)
        .where(Notification.user_id == ctx.actor.id)
        .order_by(Notification.created_at.desc())
        .limit(20)
    ).all()
    return [notification_json(n) for n in rows]


def notification_read(ctx: Ctx, req: Req) -> Any:
    ctx.db.execute(
        update(Notification)
        .where(
            Notification.id == str(req.path_params["notification_id"])[:36],
            Notification.user_id == ctx.actor.id,
            Notification.read_at.is_(None),
        )
        .values(read_at=ctx.now)
    )
    return {"message": "Notification marked as read"}


def notifications_read_all(ctx: Ctx, req: Req) -> Any:
    ctx.db.execute(
        update(Notification)
        .where(Notification.user_id == ctx.actor.id, Notification.read_at.is_(None))
        .values(read_at=ctx.now)
    )
    return {"message": "All notifications marked as read"}
