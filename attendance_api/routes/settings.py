"""Organisation settings: the health probe and the public settings, the admin's typed update,
the logo upload and the read-only backup."""

from __future__ import annotations

from typing import Any

from .. import settings_registry as registry
from ..context import ApiError, Ctx
from ..models import Setting
from ..serialize import iso
from ..web import Req
from .media import store_image


def health(ctx: Ctx, req: Req) -> Any:
    return {
        "status": "healthy",
        "timestamp": iso(ctx.now),
        "app": "attendance_api",
        "database": "connected",
    }


def public_settings(ctx: Ctx, req: Req) -> Any:
    return registry.public_settings(ctx.settings())


def settings_update(ctx: Ctx, req: Req) -> Any:
    """Typed registry: every key validated, unknown keys refused (fix F13), every change audited.

    docs/attendance.md, "Settings registry"."""
    if not req.body:
        raise ApiError(422, "No settings given.")
    errors: dict[str, list[str]] = {}
    parsed: dict[str, Any] = {}
    for key, value in req.body.items():
        if key in registry.FIXED_LEGACY:
            # legacy keys the UI sends back: fixed values, ignored on write unless they ask
            # for behaviour the decisions rule out
            try:
                registry.check_legacy(key, value)
            except registry.SettingError as exc:
                errors[key] = [f"The {key} setting {exc}."]
            continue
        try:
            parsed[registry.canonical_key(key)] = registry.parse_setting(key, value)
        except registry.SettingError as exc:
            errors[key] = [f"The {key} setting {exc}."]
    if errors:
        raise ApiError(422, next(iter(errors.values()))[0], errors=errors)
    old = ctx.settings()
    changed = {k: v for k, v in parsed.items() if old.get(k) != v}
    for key, value in changed.items():
        row = ctx.db.get(Setting, key)
        if row is None:
            ctx.db.add(Setting(key=key, value=value, updated_at=ctx.now, updated_by=ctx.actor.id))
        else:
            row.value = value
            row.updated_at = ctx.now
            row.updated_by = ctx.actor.id
    if changed:
        ctx.audit(
            "update_settings",
            "Settings changed: " + ", ".join(sorted(changed)),
            model_type="Setting",
            old={k: old.get(k) for k in changed},
            new=changed,
        )
    ctx.invalidate_settings()
    return {"message": "Settings saved successfully", "count": len(changed)}


def settings_logo(ctx: Ctx, req: Req) -> Any:
    """Multipart `logo`: PNG, JPEG or GIF (by content, not by name) up to 2 MB (no SVG:
    docs/attendance.md, fix F11)."""
    url = store_image(ctx, req, "logo")
    row = ctx.db.get(Setting, "system_logo")
    if row is None:
        ctx.db.add(Setting(key="system_logo", value=url, updated_at=ctx.now))
    else:
        row.value, row.updated_at, row.updated_by = url, ctx.now, ctx.actor.id
    ctx.audit("update_settings", "Logo uploaded", model_type="Setting", new={"system_logo": url})
    return {"url": url, "message": "Logo uploaded successfully"}


def settings_backup(ctx: Ctx, req: Req) -> Any:
    """Read-only export of the settings (no users, no audit rows:
    docs/attendance.md, fix F1)."""
    return {"exported_at": iso(ctx.now), "settings": ctx.settings()}
