"""pusherd's webhooks (`POST /webhooks/pusher`): verified with the official SDK, then the
presence events update who is online (see :mod:`attendance_api.presence`)."""

from __future__ import annotations

from typing import Any

from .. import domain
from ..context import ApiError, Ctx
from ..presence import apply_webhook_events
from ..web import Req


def pusher_webhook(ctx: Ctx, req: Req) -> Any:
    """Receive a webhook: 401 unless the SDK's `validate_webhook` accepts the key, the
    signature of the raw body and its `time_ms`; events already processed are ignored."""
    client = ctx.runtime.auth_client()
    if client is None:  # no app secret: no webhook can be verified
        raise ApiError(401, "Invalid webhook signature: realtime is not configured.")
    try:
        payload = client.validate_webhook(
            key=req.headers.get("x-pusher-key", ""),
            signature=req.headers.get("x-pusher-signature", ""),
            body=req.raw_body,
        )
    except (TypeError, ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise ApiError(401, "Invalid webhook signature.")
    changed = apply_webhook_events(ctx, payload["events"])
    employees = [user for user in changed if user.role == "employee"]
    for user in employees:
        domain.emit_employee(ctx, user, "presence")
    if employees:
        domain.emit_dashboard(ctx)
    return {"received": len(payload["events"])}
