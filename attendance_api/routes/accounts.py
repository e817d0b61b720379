"""Accounts and sessions of a user: login (with throttling), bearer tokens (issue, refresh,
revoke), logout, the inactivity heartbeat, the password policy, the own profile and password,
and the login-email uniqueness check."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from ..context import ApiError, Ctx, validation_error
from ..models import ApiToken, User
from ..security import (
    DUMMY_HASH,
    TOKEN_LIFETIME,
    hash_password,
    hash_token_secret,
    new_token_secret,
    password_policy_errors,
    verify_password,
)
from ..serialize import user_resource
from ..web import Req
from .common import raw_user
from .media import store_image


def login(ctx: Ctx, req: Req) -> Any:
    email = (req.b_str("email", required=True, max_len=255) or "").lower()
    password = req.b_str("password", required=True, max_len=256) or ""
    login_type = req.b_str("login_type", max_len=20)
    runtime_throttle = ctx.runtime.throttle
    ip = ctx.ip or "unknown"
    wait = runtime_throttle.blocked(email, ip, ctx.now, int(ctx.setting("max_login_attempts")))
    # refusals are answered (not raised) so that their audit entries are committed
    if wait is not None:
        ctx.audit("login_rate_limited", f"Too many login attempts for {email}", status="warning")
        return 429, ApiError(
            429,
            f"Too many login attempts. Please try again in {wait} seconds.",
            "TOO_MANY_ATTEMPTS",
            retry_after=wait,
        ).body()
    user = ctx.db.scalars(
        select(User).where(User.email == email, User.deleted_at.is_(None))
    ).first()
    ok = verify_password(password, user.password_hash if user else DUMMY_HASH)
    if user is None or not ok:
        runtime_throttle.record_failure(email, ip, ctx.now)
        ctx.audit(
            "login_failed",
            f"Failed login for {email}",
            status="failed",
            actor_id=user.id if user else None,
        )
        return 422, validation_error("email", "The provided credentials are incorrect.").body()
    refusal = None
    if user.status != "active":
        refusal = "Your account has been deactivated."
    elif login_type in ("admin", "employee") and login_type != user.role:
        refusal = f"Please use the {user.role} login."
    if refusal is not None:
        ctx.audit(
            "login_failed",
            f"Refused login for {email}: {refusal}",
            status="failed",
            actor_id=user.id,
        )
        return 422, validation_error("email", refusal).body()
    runtime_throttle.record_success(email)
    ctx.db.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=ctx.now)
    )
    token = issue_token(ctx, user)
    ctx.audit(
        "login", f"{user.email} logged in", model_type="User", model_id=user.id, actor_id=user.id
    )
    return {"token": token, "user": user_resource(user, online=True)}


def issue_token(ctx: Ctx, user: User) -> str:
    secret = new_token_secret()
    row = ApiToken(
        user_id=user.id,
        secret_hash=hash_token_secret(secret),
        name="auth_token",
        created_at=ctx.now,
        last_used_at=ctx.now,
        expires_at=ctx.now + TOKEN_LIFETIME,
    )
    ctx.db.add(row)
    ctx.db.flush()
    return f"{row.id}|{secret}"


def logout(ctx: Ctx, req: Req) -> Any:
    ctx.token.revoked_at = ctx.now
    ctx.audit("logout", "Logged out", model_type="User", model_id=ctx.actor.id)
    return {"message": "Logged out successfully"}


def me(ctx: Ctx, req: Req) -> Any:
    return {"user": user_resource(ctx.actor, online=True)}


def refresh(ctx: Ctx, req: Req) -> Any:
    ctx.token.revoked_at = ctx.now
    token = issue_token(ctx, ctx.actor)
    return {"token": token, "user": user_resource(ctx.actor, online=True)}


def heartbeat(ctx: Ctx, req: Req) -> Any:
    """Refresh the token's activity; after `session_timeout` minutes without a heartbeat the
    token is revoked and the answer is 401 (the original's inactivity logout)."""
    timeout = timedelta(minutes=int(ctx.setting("session_timeout")))
    last = ctx.token.last_used_at or ctx.token.created_at
    if ctx.now - last > timeout:
        ctx.token.revoked_at = ctx.now
        ctx.audit(
            "logout", "Session expired due to inactivity", model_type="User", model_id=ctx.actor.id
        )
        return 401, {"message": "Session expired due to inactivity.", "error_code": "EXPIRED"}
    ctx.token.last_used_at = ctx.now
    return {"status": "ok"}


def password_policy(ctx: Ctx, req: Req) -> Any:
    return {
        "min_length": ctx.setting("pass_min_length"),
        "require_special_char": ctx.setting("pass_special_chars"),
    }


def update_profile(ctx: Ctx, req: Req) -> Any:
    """Names and avatar (an image up to 2 MB, checked by content); the login email is an
    identity and only an admin changes it (docs/attendance.md, fix F8)."""
    user = ctx.user
    assert user is not None
    old = {"first_name": user.first_name, "last_name": user.last_name, "email": user.email}
    user.first_name = req.b_str("first_name", required=True, max_len=100) or user.first_name
    user.last_name = req.b_str("last_name", required=True, max_len=100) or user.last_name
    email = req.b_email("email")
    if email and email != user.email:
        if user.role != "admin":
            raise ApiError(
                403, "Only an administrator can change a login email.", "EMAIL_CHANGE_FORBIDDEN"
            )
        ensure_email_free(ctx, email, user.id)
        user.email = email
    if req.body.get("avatar") is not None and not isinstance(req.body.get("avatar"), str):
        user.avatar = store_image(ctx, req, "avatar")
    user.updated_at = ctx.now
    ctx.audit(
        "update_profile",
        "Profile updated",
        model_type="User",
        model_id=user.id,
        old=old,
        new={"first_name": user.first_name, "last_name": user.last_name, "email": user.email},
    )
    return {"message": "Profile updated successfully", "user": raw_user(user)}


def change_password(ctx: Ctx, req: Req) -> Any:
    user = ctx.user
    assert user is not None
    current = req.b_str("current_password", required=True, max_len=256) or ""
    new = req.b_str("password", required=True, max_len=256) or ""
    if req.body.get("password_confirmation") != req.body.get("password"):
        raise validation_error("password", "The password confirmation does not match.")
    if not verify_password(current, user.password_hash):
        raise validation_error("current_password", "The current password is incorrect.")
    errors = password_policy_errors(
        new, int(ctx.setting("pass_min_length")), bool(ctx.setting("pass_special_chars"))
    )
    if errors:
        raise ApiError(422, errors[0], errors={"password": errors})
    user.password_hash = hash_password(new)
    user.updated_at = ctx.now
    # every other token is revoked; the caller keeps the one it used
    ctx.db.execute(
        update(ApiToken)
        .where(
            ApiToken.user_id == user.id, ApiToken.id != ctx.token.id, ApiToken.revoked_at.is_(None)
        )
        .values(revoked_at=ctx.now)
    )
    ctx.audit("password_change", "Password changed", model_type="User", model_id=user.id)
    return {"message": "Password changed successfully"}


def revoke_tokens(ctx: Ctx, user_id: int) -> None:
    ctx.db.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=ctx.now)
    )


def ensure_email_free(ctx: Ctx, email: str, except_id: int | None = None) -> None:
    clash = ctx.db.scalar(select(User.id).where(User.email == email, User.deleted_at.is_(None)))
    if clash is not None and clash != except_id:
        raise validation_error("email", "The email has already been taken.")
