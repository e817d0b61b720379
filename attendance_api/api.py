"""The REST API under `/api`: original paths and response shapes (spec section 2, 7.3)."""

from __future__ import annotations

import csv
import io
from calendar import monthrange
from datetime import date, time, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from . import domain, rules
from . import settings_registry as registry
from .context import ApiError, Ctx, audit_hash, validation_error
from .models import (
    ApiToken,
    AttendanceRecord,
    AttendanceSession,
    AuditLog,
    Break,
    Media,
    Notification,
    Schedule,
    Setting,
    User,
)
from .security import (
    DUMMY_HASH,
    TOKEN_LIFETIME,
    hash_password,
    hash_token_secret,
    new_token_secret,
    password_policy_errors,
    verify_password,
)
from .serialize import (
    break_json,
    iso,
    iso_date,
    notification_json,
    paginate,
    schedule_json,
    user_resource,
)
from .web import Req, RouteSpec, find_one, online_ids, path_id

LIST_CAP = 200
REPORT_CAP = 5000


def page_of(req: Req, default: int, cap: int = LIST_CAP) -> tuple[int, int]:
    return req.q_int("page", 1, 1, 10**6), req.q_int("per_page", default, 1, cap)


def raw_user(user: User) -> dict[str, Any]:
    data = user_resource(user)
    data.pop("full_name")
    data.pop("is_online")
    return data


# ====================================================================== auth


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
    identity and only an admin changes it (spec 6.2 #7)."""
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


# ====================================================================== public


def health(ctx: Ctx, req: Req) -> Any:
    return {
        "status": "healthy",
        "timestamp": iso(ctx.now),
        "app": "attendance_api",
        "database": "connected",
    }


def public_settings(ctx: Ctx, req: Req) -> Any:
    return registry.public_settings(ctx.settings())


# ====================================================================== notifications


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


# ====================================================================== employees


def ensure_email_free(ctx: Ctx, email: str, except_id: int | None = None) -> None:
    clash = ctx.db.scalar(select(User.id).where(User.email == email, User.deleted_at.is_(None)))
    if clash is not None and clash != except_id:
        raise validation_error("email", "The email has already been taken.")


def ensure_code_free(ctx: Ctx, code: str, except_id: int | None = None) -> None:
    clash = ctx.db.scalar(
        select(User.id).where(
            func.upper(User.employee_code) == code.upper(), User.deleted_at.is_(None)
        )
    )
    if clash is not None and clash != except_id:
        raise validation_error("employee_id", "The employee id has already been taken.")


def employee_list(ctx: Ctx, req: Req, status: str | None) -> dict[str, Any]:
    page, per_page = page_of(req, 20)
    stmt = select(User).where(User.deleted_at.is_(None), User.role == "employee")
    if status in ("active", "inactive"):
        stmt = stmt.where(User.status == status)
    search = req.q_str("search", 100)
    if search:
        like = f"%{search.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(User.first_name).like(like),
                func.lower(User.last_name).like(like),
                func.lower(User.employee_code).like(like),
                User.email.like(like),
            )
        )
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    users = ctx.db.scalars(
        stmt.order_by(User.employee_code).offset((page - 1) * per_page).limit(per_page)
    ).all()
    online = online_ids(ctx, [u.id for u in users])
    items = []
    for user in users:
        last = (
            ctx.db.scalars(
                select(AttendanceRecord)
                .where(AttendanceRecord.user_id == user.id, AttendanceRecord.status != "pending")
                .order_by(AttendanceRecord.work_date.desc())
                .limit(1)
            )
            .unique()
            .first()
        )
        data = user_resource(user, online=user.id in online)
        data["last_attendance_date"] = iso_date(last.work_date) if last else None
        data["last_attendance_status"] = last.status if last else None
        items.append(data)
    out = paginate(items, total, page, per_page, req.path)
    counts = dict(
        ctx.db.execute(
            select(User.status, func.count(User.id))
            .where(User.deleted_at.is_(None), User.role == "employee")
            .group_by(User.status)
        ).all()
    )
    out["summary"] = {
        "total": sum(counts.values()),
        "active": counts.get("active", 0),
        "inactive": counts.get("inactive", 0),
    }
    return out


def employees_index(ctx: Ctx, req: Req) -> Any:
    return employee_list(ctx, req, req.q_str("status"))


def employees_deactivated(ctx: Ctx, req: Req) -> Any:
    return employee_list(ctx, req, "inactive")


def employees_next_id(ctx: Ctx, req: Req) -> Any:
    codes = ctx.db.scalars(select(User.employee_code).where(User.deleted_at.is_(None))).all()
    return {"next_employee_id": rules.next_employee_code(list(codes))}


def employees_store(ctx: Ctx, req: Req) -> Any:
    code = req.b_str("employee_id", max_len=20)
    first = req.b_str("first_name", required=True, max_len=100)
    last = req.b_str("last_name", required=True, max_len=100)
    email = req.b_email("email", required=True)
    password = req.b_str("password", required=True, max_len=256) or ""
    position = req.b_str("position", required=True, max_len=100)
    if req.body.get("password_confirmation") not in (None, req.body.get("password")):
        raise validation_error("password", "The password confirmation does not match.")
    errors = password_policy_errors(
        password, int(ctx.setting("pass_min_length")), bool(ctx.setting("pass_special_chars"))
    )
    if errors:
        raise ApiError(422, errors[0], errors={"password": errors})
    assert email is not None
    ensure_email_free(ctx, email)
    if not code:
        code = employees_next_id(ctx, req)["next_employee_id"]
    ensure_code_free(ctx, code)
    user = User(
        employee_code=code,
        email=email,
        password_hash=hash_password(password),
        first_name=first,
        last_name=last,
        role="employee",
        position=position,
        department=req.b_str("department", max_len=100),
        employee_type=req.b_str("employee_type", max_len=50),
        status="active",
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.db.add(user)
    try:
        with ctx.db.begin_nested():
            ctx.db.flush()
    except IntegrityError:
        raise validation_error(
            "email", "The email or employee id has already been taken."
        ) from None
    ctx.audit("create_employee", f"Employee {code} created", model_type="User", model_id=user.id)
    domain.emit_employee(ctx, user, "created")
    return 201, raw_user(user)


def employee_target(ctx: Ctx, req: Req) -> User:
    user = find_one(ctx, User, req.path_params["id"], "Employee")
    return user  # type: ignore[no-any-return]


def employees_show(ctx: Ctx, req: Req) -> Any:
    return raw_user(employee_target(ctx, req))


def employees_by_code(ctx: Ctx, req: Req) -> Any:
    code = str(req.path_params["code"])[:20]
    user = ctx.db.scalars(
        select(User).where(
            func.upper(User.employee_code) == code.upper(), User.deleted_at.is_(None)
        )
    ).first()
    if user is None:
        raise ApiError(404, "Employee not found.")
    return raw_user(user)


def guard_other_admin(ctx: Ctx, user: User) -> None:
    """Admins manage employees; another admin's account is not editable here (6.2 #10)."""
    if user.role == "admin" and user.id != ctx.actor.id:
        raise ApiError(403, "Administrator accounts cannot be changed here.", "FORBIDDEN")


def set_status(ctx: Ctx, user: User, status: str) -> None:
    if user.id == ctx.actor.id and status != "active":
        raise ApiError(422, "You cannot deactivate your own account.")
    user.status = status
    user.updated_at = ctx.now
    if status == "inactive":
        revoke_tokens(ctx, user.id)


def employees_update(ctx: Ctx, req: Req) -> Any:
    user = employee_target(ctx, req)
    guard_other_admin(ctx, user)
    old = raw_user(user)
    if req.has("employee_id"):
        code = req.b_str("employee_id", max_len=20)
        assert code is not None
        ensure_code_free(ctx, code, user.id)
        user.employee_code = code
    for name, length in (
        ("first_name", 100),
        ("last_name", 100),
        ("position", 100),
        ("department", 100),
        ("employee_type", 50),
    ):
        if name in req.body:
            setattr(user, name, req.b_str(name, max_len=length, required=name.endswith("_name")))
    if req.has("email"):
        email = req.b_email("email")
        assert email is not None
        ensure_email_free(ctx, email, user.id)
        user.email = email
    action = "updated"
    if req.has("status"):
        status = req.b_str("status", max_len=20)
        if status not in ("active", "inactive"):
            raise validation_error("status", "The selected status is invalid.")
        if status != user.status:
            action = "activated" if status == "active" else "deactivated"
        set_status(ctx, user, status)
    if req.has("password"):
        password = req.b_str("password", max_len=256) or ""
        if req.body.get("password_confirmation") not in (None, req.body.get("password")):
            raise validation_error("password", "The password confirmation does not match.")
        errors = password_policy_errors(
            password, int(ctx.setting("pass_min_length")), bool(ctx.setting("pass_special_chars"))
        )
        if errors:
            raise ApiError(422, errors[0], errors={"password": errors})
        user.password_hash = hash_password(password)
        revoke_tokens(ctx, user.id)
    user.updated_at = ctx.now
    try:
        with ctx.db.begin_nested():
            ctx.db.flush()
    except IntegrityError:
        raise validation_error(
            "email", "The email or employee id has already been taken."
        ) from None
    ctx.audit(
        "update_employee",
        f"Employee {user.employee_code} updated",
        model_type="User",
        model_id=user.id,
        old=old,
        new=raw_user(user),
    )
    domain.emit_employee(ctx, user, action)
    return {
        "message": "Employee updated successfully",
        "employee": raw_user(user),
        **raw_user(user),
    }


def employees_toggle(ctx: Ctx, req: Req) -> Any:
    user = employee_target(ctx, req)
    guard_other_admin(ctx, user)
    new = "inactive" if user.status == "active" else "active"
    set_status(ctx, user, new)
    action = "activated" if new == "active" else "deactivated"
    ctx.audit(
        "activate_employee" if new == "active" else "deactivate_employee",
        f"Employee {user.employee_code} {action}",
        model_type="User",
        model_id=user.id,
    )
    domain.emit_employee(ctx, user, action)
    return {
        "message": f"Employee {action} successfully",
        "employee": raw_user(user),
        "status": user.status,
    }


def employees_destroy(ctx: Ctx, req: Req) -> Any:
    user = employee_target(ctx, req)
    guard_other_admin(ctx, user)
    if user.id == ctx.actor.id:
        raise ApiError(422, "You cannot delete your own account.")
    user.deleted_at = ctx.now
    user.status = "inactive"
    revoke_tokens(ctx, user.id)
    ctx.audit(
        "delete_employee",
        f"Employee {user.employee_code} deleted",
        model_type="User",
        model_id=user.id,
    )
    domain.emit_employee(ctx, user, "deleted")
    return {"message": "Employee deleted successfully"}


# ====================================================================== schedules


def schedules_index(ctx: Ctx, req: Req) -> Any:
    page, per_page = page_of(req, 20)
    stmt = select(Schedule).where(Schedule.deleted_at.is_(None))
    status = req.q_str("status")
    if status in ("active", "inactive"):
        stmt = stmt.where(Schedule.status == status)
    search = req.q_str("search", 100)
    if search:
        stmt = stmt.where(func.lower(Schedule.name).like(f"%{search.lower()}%"))
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.db.scalars(
        stmt.order_by(Schedule.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return paginate([schedule_json(s) for s in rows], total, page, per_page, req.path)


def apply_schedule(ctx: Ctx, req: Req, schedule: Schedule, creating: bool) -> None:
    if creating or "name" in req.body:
        schedule.name = req.b_str("name", required=True, max_len=100) or schedule.name
    for name in ("time_in", "time_out"):
        if creating or name in req.body:
            value = req.b_time(name, required=True)
            assert value is not None
            setattr(schedule, name, value)
    if "break_time" in req.body:
        schedule.break_time = req.b_time("break_time")
    if "grace_period_minutes" in req.body:
        schedule.grace_period_minutes = req.b_int("grace_period_minutes", lo=0, hi=60)
    if req.has("late_threshold_minutes"):
        schedule.late_threshold_minutes = req.b_int("late_threshold_minutes", lo=0, hi=120) or 0
    if "checkin_open_before_min" in req.body:
        schedule.checkin_open_before_min = req.b_int("checkin_open_before_min", lo=0, hi=720)
    if "checkin_close_after_min" in req.body:
        schedule.checkin_close_after_min = req.b_int("checkin_close_after_min", lo=0, hi=720)
    if req.has("status"):
        status = req.b_str("status", max_len=20)
        if status not in ("active", "inactive"):
            raise validation_error("status", "The selected status is invalid.")
        schedule.status = status
    if schedule.time_in == schedule.time_out:
        raise validation_error("time_out", "The shift must not start and end at the same time.")
    schedule.updated_at = ctx.now


def schedules_store(ctx: Ctx, req: Req) -> Any:
    schedule = Schedule(
        status="active", late_threshold_minutes=30, created_at=ctx.now, grace_period_minutes=15
    )
    apply_schedule(ctx, req, schedule, True)
    ctx.db.add(schedule)
    ctx.db.flush()
    ctx.audit(
        "create_schedule",
        f"Schedule {schedule.name} created",
        model_type="Schedule",
        model_id=schedule.id,
    )
    return 201, schedule_json(schedule)


def schedules_show(ctx: Ctx, req: Req) -> Any:
    return schedule_json(find_one(ctx, Schedule, req.path_params["id"], "Schedule"))


def schedules_update(ctx: Ctx, req: Req) -> Any:
    schedule = find_one(ctx, Schedule, req.path_params["id"], "Schedule")
    apply_schedule(ctx, req, schedule, False)
    ctx.audit(
        "update_schedule",
        f"Schedule {schedule.name} updated",
        model_type="Schedule",
        model_id=schedule.id,
    )
    return schedule_json(schedule)


def schedules_toggle(ctx: Ctx, req: Req) -> Any:
    schedule = find_one(ctx, Schedule, req.path_params["id"], "Schedule")
    schedule.status = "inactive" if schedule.status == "active" else "active"
    schedule.updated_at = ctx.now
    ctx.audit(
        ("activate" if schedule.status == "active" else "deactivate") + "_schedule",
        f"Schedule {schedule.name} {schedule.status}",
        model_type="Schedule",
        model_id=schedule.id,
    )
    return schedule_json(schedule)


def schedules_destroy(ctx: Ctx, req: Req) -> Any:
    schedule = find_one(ctx, Schedule, req.path_params["id"], "Schedule")
    schedule.deleted_at = ctx.now
    ctx.audit(
        "delete_schedule",
        f"Schedule {schedule.name} deleted",
        model_type="Schedule",
        model_id=schedule.id,
    )
    return {"message": "Schedule deleted successfully"}


# ====================================================================== sessions


def session_counts(ctx: Ctx, session_id: int) -> tuple[int, int]:
    confirmed = (
        ctx.db.scalar(
            select(func.count(AttendanceRecord.id)).where(
                AttendanceRecord.session_id == session_id, AttendanceRecord.time_in.is_not(None)
            )
        )
        or 0
    )
    total = (
        ctx.db.scalar(
            select(func.count(AttendanceRecord.id)).where(AttendanceRecord.session_id == session_id)
        )
        or 0
    )
    return confirmed, total


def session_list_item(ctx: Ctx, session: AttendanceSession) -> dict[str, Any]:
    data = domain.session_out(ctx, session)
    confirmed, total = session_counts(ctx, session.id)
    data["confirmed_count"] = confirmed
    data["total_employees_count"] = total
    creator = ctx.db.get(User, session.created_by) if session.created_by else None
    data["creator"] = (
        {
            "id": creator.id,
            "first_name": creator.first_name,
            "last_name": creator.last_name,
            "name": f"{creator.first_name} {creator.last_name}",
        }
        if creator
        else None
    )
    return data


def sessions_index(ctx: Ctx, req: Req) -> Any:
    page, per_page = page_of(req, 20)
    rows = domain.sessions_for(
        ctx, date=req.q_date("date"), schedule_id=req.q_int("schedule_id", 0, 0)
    )
    status = req.q_str("status")
    if status:
        rows = [s for s in rows if domain.status_of(ctx, s) == status]
    chunk = rows[(page - 1) * per_page : page * per_page]
    return paginate([session_list_item(ctx, s) for s in chunk], len(rows), page, per_page, req.path)


def sessions_active(ctx: Ctx, req: Req) -> Any:
    op = domain.today(ctx)
    rows = (
        ctx.db.scalars(
            select(AttendanceSession).where(
                AttendanceSession.work_date >= op - timedelta(days=1),
                AttendanceSession.work_date <= op + timedelta(days=1),
            )
        )
        .unique()
        .all()
    )
    return [session_list_item(ctx, s) for s in rows if domain.status_of(ctx, s) == "active"]


def sessions_today(ctx: Ctx, req: Req) -> Any:
    rows = domain.sessions_for(ctx, date=domain.today(ctx))
    return [session_list_item(ctx, s) for s in rows]


def sessions_show(ctx: Ctx, req: Req) -> Any:
    session = find_one(ctx, AttendanceSession, req.path_params["id"], "Session")
    data = session_list_item(ctx, session)
    locker = ctx.db.get(User, session.locked_by) if session.locked_by else None
    data["locked_by_user"] = (
        {"id": locker.id, "first_name": locker.first_name, "last_name": locker.last_name}
        if locker
        else None
    )
    records = (
        ctx.db.scalars(select(AttendanceRecord).where(AttendanceRecord.session_id == session.id))
        .unique()
        .all()
    )
    rows = domain.records_out(ctx, list(records))
    optional = not session.attendance_required
    for row in rows:
        if optional and row["status"] == "pending":
            row["status"] = "optional"
    have = {r.user_id for r in records}
    have |= set(
        ctx.db.scalars(
            select(AttendanceRecord.user_id).where(AttendanceRecord.work_date == session.work_date)
        ).all()
    )
    for user in ctx.db.scalars(
        select(User)
        .where(User.role == "employee", User.status == "active", User.deleted_at.is_(None))
        .order_by(User.employee_code)
    ):
        if user.id in have:
            continue
        rows.append(
            {
                "id": f"virtual_{user.id}",
                "session_id": session.id,
                "user_id": user.id,
                "attendance_date": iso_date(session.work_date),
                "time_in": None,
                "time_out": None,
                "break_start": None,
                "break_end": None,
                "status": "optional" if optional else "pending",
                "minutes_late": 0,
                "hours_worked": 0,
                "is_virtual": True,
                "user": user_resource(user),
            }
        )
    data["records"] = rows
    return data


def sessions_store(ctx: Ctx, req: Req) -> Any:
    schedule_id = req.b_int("schedule_id", required=True, lo=1)
    schedule = ctx.db.get(Schedule, schedule_id)
    if schedule is None or schedule.deleted_at is not None:
        raise validation_error("schedule_id", "The selected schedule id is invalid.")
    work_date = req.b_date("date", required=True)
    assert work_date is not None
    ids = req.body.get("employee_ids") or []
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= 2**31 - 1 for i in ids
    ):
        raise validation_error("employee_ids", "The employee ids must be a list of ids.")
    if ids:
        found = set(
            ctx.db.scalars(
                select(User.id).where(
                    User.id.in_(ids), User.role == "employee", User.deleted_at.is_(None)
                )
            ).all()
        )
        missing = [i for i in ids if i not in found]
        if missing:
            raise validation_error("employee_ids", f"Unknown employees: {missing[:20]}")
    session = domain.create_session(ctx, schedule, work_date, ids)
    return 201, {
        "message": "Session created successfully",
        "session": domain.session_out(ctx, session),
        **domain.session_out(ctx, session),
    }


def sessions_destroy(ctx: Ctx, req: Req) -> Any:
    session = find_one(ctx, AttendanceSession, req.path_params["id"], "Session")
    domain.emit_session(ctx, session, "deleted")
    ctx.db.delete(session)
    ctx.audit(
        "delete_session",
        f"Session {session.id} deleted",
        model_type="AttendanceSession",
        model_id=session.id,
    )
    return {"message": "Session deleted successfully"}


def sessions_lock(ctx: Ctx, req: Req) -> Any:
    session = find_one(ctx, AttendanceSession, req.path_params["id"], "Session")
    marked = domain.lock_session(
        ctx, session, req.b_bool("attendance_required"), req.b_str("session_type", max_len=30)
    )
    return {
        "message": "Session locked successfully",
        "absent_marked": marked,
        "session": domain.session_out(ctx, session),
    }


def sessions_unlock(ctx: Ctx, req: Req) -> Any:
    session = find_one(ctx, AttendanceSession, req.path_params["id"], "Session")
    domain.unlock_session(ctx, session)
    return {"message": "Session unlocked successfully", "session": domain.session_out(ctx, session)}


# ====================================================================== records


CLIENT_FIELDS = (
    "device_type",
    "device_name",
    "browser",
    "os",
    "latitude",
    "longitude",
    "location_address",
    "location_city",
    "location_country",
)


def confirm(ctx: Ctx, req: Req) -> Any:
    info = {}
    for name in CLIENT_FIELDS:
        value = req.body.get(name)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            info[name] = str(value)[:255]
    session_id = path_id(req, "session_id", "Session")
    record = domain.check_in(ctx, session_id, info)
    return {
        "message": "Attendance confirmed successfully",
        "record": domain.record_out(ctx, record),
    }


CAN_CONFIRM_REASONS = {
    rules.CheckInRefusal.CURRENTLY_CHECKED_IN: "currently_checked_in",
    rules.CheckInRefusal.ALREADY_CHECKED_OUT: "already_confirmed",
    rules.CheckInRefusal.SESSION_LOCKED: "session_inactive",
    rules.CheckInRefusal.SESSION_COMPLETED: "session_inactive",
    rules.CheckInRefusal.NOT_ASSIGNED: "no_weekend_shift",
    rules.CheckInRefusal.EXCUSED: "already_confirmed",
    rules.CheckInRefusal.TOO_EARLY: "too_early",
    rules.CheckInRefusal.TOO_LATE: "too_late",
}


def can_confirm(ctx: Ctx, req: Req) -> Any:
    """The same decision `confirm` makes, without making it (original reason names)."""
    session = ctx.db.get(AttendanceSession, path_id(req, "session_id", "Session"))
    if session is None:
        return {
            "can_confirm": False,
            "reason": "session_not_found",
            "message": "Session not found.",
        }
    decision = domain.check_in_decision(ctx, session, ctx.actor)
    if decision.allowed:
        return {"can_confirm": True}
    assert decision.refusal is not None
    return {
        "can_confirm": False,
        "reason": CAN_CONFIRM_REASONS[decision.refusal],
        "message": decision.message,
    }


def break_rules(ctx: Ctx, req: Req) -> Any:
    """Derived from the settings (the original's separate break_rules row contradicted them):
    no time window, the cumulative allowance in minutes."""
    minutes = int(ctx.setting("break_duration"))
    return {
        "configured": True,
        "start_time": None,
        "end_time": None,
        "start_time_formatted": None,
        "end_time_formatted": None,
        "max_minutes": minutes,
    }


def check_out(ctx: Ctx, req: Req) -> Any:
    record = domain.check_out(ctx, path_id(req))
    return {"message": "Checked out successfully", "record": domain.record_out(ctx, record)}


def record_filters(ctx: Ctx, req: Req, stmt: Any) -> Any:
    status = req.q_str("status")
    if status and status != "all":
        stmt = stmt.where(AttendanceRecord.status == status)
    day = req.q_date("date")
    if day:
        stmt = stmt.where(AttendanceRecord.work_date == day)
    start, end = req.q_date("start_date"), req.q_date("end_date")
    if start:
        stmt = stmt.where(AttendanceRecord.work_date >= start)
    if end:
        stmt = stmt.where(AttendanceRecord.work_date <= end)
    month, year = req.q_int("month", 0, 0, 12), req.q_int("year", 0, 0, 9999)
    if month and year:
        stmt = stmt.where(
            AttendanceRecord.work_date >= date(year, month, 1),
            AttendanceRecord.work_date <= date(year, month, monthrange(year, month)[1]),
        )
    return stmt


def record_page(ctx: Ctx, req: Req, stmt: Any, default: int, cap: int = LIST_CAP) -> Any:
    page, per_page = page_of(req, default, cap)
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = (
        ctx.db.scalars(
            stmt.order_by(AttendanceRecord.work_date.desc(), AttendanceRecord.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
        .unique()
        .all()
    )
    return paginate(domain.records_out(ctx, list(rows)), total, page, per_page, req.path)


def my_records(ctx: Ctx, req: Req) -> Any:
    stmt = record_filters(
        ctx, req, select(AttendanceRecord).where(AttendanceRecord.user_id == ctx.actor.id)
    )
    return record_page(ctx, req, stmt, 20)


def records_index(ctx: Ctx, req: Req) -> Any:
    stmt = record_filters(ctx, req, select(AttendanceRecord))
    search = req.q_str("search", 100)
    if search:
        like = f"%{search.lower()}%"
        stmt = stmt.join(User, User.id == AttendanceRecord.user_id).where(
            or_(
                func.lower(User.first_name).like(like),
                func.lower(User.last_name).like(like),
                func.lower(User.employee_code).like(like),
            )
        )
    return record_page(ctx, req, stmt, 50, REPORT_CAP)


def record_show(ctx: Ctx, req: Req) -> Any:
    return domain.record_out(ctx, find_one(ctx, AttendanceRecord, req.path_params["id"], "Record"))


def records_by_session(ctx: Ctx, req: Req) -> Any:
    rows = (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(AttendanceRecord.session_id == path_id(req))
            .order_by(AttendanceRecord.time_in)
        )
        .unique()
        .all()
    )
    return domain.records_out(ctx, list(rows))


def records_by_employee(ctx: Ctx, req: Req) -> Any:
    stmt = select(AttendanceRecord).where(AttendanceRecord.user_id == path_id(req))
    return record_page(ctx, req, stmt, 20)


STATUSES = ("present", "late", "absent", "excused", "left_early", "pending")


def check_break_pair(ctx: Ctx, req: Req, record: AttendanceRecord | None) -> tuple[Any, Any]:
    start = req.b_datetime("break_start", ctx.tz)
    end = req.b_datetime("break_end", ctx.tz)
    if start and end:
        if end <= start:
            raise validation_error("break_end", "The break end must be after the break start.")
        others = 0
        if record is not None:
            breaks = domain.breaks_of(ctx, [record.id])[record.id]
            latest = breaks[-1] if breaks else None
            others = rules.break_used_seconds(
                [
                    rules.BreakSpan(b.started_at, b.ended_at, b.limit_seconds)
                    for b in breaks
                    if b is not latest
                ],
                ctx.now,
            )
        if others + (end - start).total_seconds() > int(ctx.setting("break_duration")) * 60:
            raise ApiError(400, "The breaks exceed the allowance.", "BREAK_LIMIT_EXCEEDED")
    return start, end


def sync_manual_break(ctx: Ctx, record: AttendanceRecord, start: Any, end: Any) -> None:
    if not start:
        return
    breaks = domain.breaks_of(ctx, [record.id])[record.id]
    latest = breaks[-1] if breaks else None
    if latest is None:
        latest = Break(
            record_id=record.id,
            user_id=record.user_id,
            work_date=record.work_date,
            break_type="Manual",
            created_at=ctx.now,
        )
        ctx.db.add(latest)
    latest.started_at = start
    latest.ended_at = end or start
    latest.limit_seconds = None
    latest.end_reason = "admin"
    latest.updated_at = ctx.now


def records_store(ctx: Ctx, req: Req) -> Any:
    user_id = req.b_int("user_id", required=True, lo=1)
    session = ctx.db.get(AttendanceSession, req.b_int("session_id", required=True, lo=1))
    if session is None:
        raise validation_error("session_id", "The selected session id is invalid.")
    user = ctx.db.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise validation_error("user_id", "The selected user id is invalid.")
    work_date = req.b_date("attendance_date") or session.work_date
    status = req.b_str("status", required=True, max_len=20)
    if status not in STATUSES[:-1]:
        raise validation_error("status", "The selected status is invalid.")
    reason = req.b_str("reason", required=True, min_len=5, max_len=1000)
    if domain.record_of_day(ctx, user.id, work_date) is not None:
        raise ApiError(
            409, "A record already exists for this employee and date.", "DUPLICATE_RECORD"
        )
    start, end = check_break_pair(ctx, req, None)
    record = AttendanceRecord(
        session_id=session.id,
        user_id=user.id,
        work_date=work_date,
        status=status,
        time_in=req.b_datetime("time_in", ctx.tz),
        time_out=req.b_datetime("time_out", ctx.tz),
        excuse_reason=req.b_str("excuse_reason", max_len=255),
        notes=reason,
        minutes_late=0,
        overtime_minutes=0,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    if record.time_in and status == "late":
        window = domain.window_of(ctx, session)
        record.minutes_late = rules.lateness(record.time_in, window)[1]
    ctx.db.add(record)
    try:
        with ctx.db.begin_nested():
            ctx.db.flush()
    except IntegrityError:
        raise ApiError(
            409, "A record already exists for this employee and date.", "DUPLICATE_RECORD"
        ) from None
    sync_manual_break(ctx, record, start, end)
    ctx.db.flush()
    ctx.db.refresh(record)
    ctx.audit(
        "create_attendance",
        f"Record {record.id} created: {reason}",
        model_type="AttendanceRecord",
        model_id=record.id,
    )
    domain.emit_attendance(ctx, record, "created")
    return 201, {"message": "Attendance record created", "record": domain.record_out(ctx, record)}


def records_update(ctx: Ctx, req: Req) -> Any:
    record = find_one(ctx, AttendanceRecord, req.path_params["id"], "Record")
    reason = req.b_str("reason", required=True, min_len=5, max_len=1000)
    old = {
        "status": record.status,
        "time_in": iso(record.time_in),
        "time_out": iso(record.time_out),
    }
    if req.has("status"):
        status = req.b_str("status", max_len=20)
        if status not in STATUSES:
            raise validation_error("status", "The selected status is invalid.")
        record.status = status
    if "time_in" in req.body:
        record.time_in = req.b_datetime("time_in", ctx.tz)
    if "time_out" in req.body:
        record.time_out = req.b_datetime("time_out", ctx.tz)
    if record.time_in and record.time_out and record.time_out < record.time_in:
        raise validation_error("time_out", "The time out must be after the time in.")
    start, end = check_break_pair(ctx, req, record)
    sync_manual_break(ctx, record, start, end)
    record.notes = reason
    record.updated_at = ctx.now
    ctx.db.flush()
    ctx.audit(
        "update_attendance",
        f"Record {record.id} updated: {reason}",
        model_type="AttendanceRecord",
        model_id=record.id,
        old=old,
        new={
            "status": record.status,
            "time_in": iso(record.time_in),
            "time_out": iso(record.time_out),
        },
    )
    domain.emit_attendance(ctx, record, "updated")
    return {"message": "Attendance record updated", "record": domain.record_out(ctx, record)}


def records_destroy(ctx: Ctx, req: Req) -> Any:
    record = find_one(ctx, AttendanceRecord, req.path_params["id"], "Record")
    domain.emit_attendance(ctx, record, "deleted")
    ctx.db.delete(record)
    ctx.audit(
        "delete_attendance",
        f"Record {record.id} deleted",
        model_type="AttendanceRecord",
        model_id=record.id,
    )
    return {"message": "Attendance record deleted"}


def records_overtime(ctx: Ctx, req: Req) -> Any:
    record = find_one(ctx, AttendanceRecord, req.path_params["id"], "Record")
    decision = req.b_str("decision", required=True, max_len=20)
    if decision not in ("approved", "rejected"):
        raise validation_error("decision", "The decision must be approved or rejected.")
    if record.overtime_minutes <= 0:
        raise ApiError(422, "This record has no overtime.", "NO_OVERTIME")
    record.overtime_status = decision
    record.overtime_decided_by = ctx.actor.id
    record.overtime_decided_at = ctx.now
    record.updated_at = ctx.now
    ctx.audit(
        "overtime_decision",
        f"Overtime {decision} on record {record.id}",
        model_type="AttendanceRecord",
        model_id=record.id,
    )
    domain.emit_attendance(ctx, record, "overtime_decided")
    return {"message": f"Overtime {decision}", "record": domain.record_out(ctx, record)}


def record_break_end(ctx: Ctx, req: Req) -> Any:
    brk = domain.admin_end_break(ctx, path_id(req))
    return {"message": "Break ended", "break": break_json(brk, ctx.now)}


def record_break_active(ctx: Ctx, req: Req) -> Any:
    record = find_one(ctx, AttendanceRecord, req.path_params["id"], "Record")
    if record.user_id != ctx.actor.id and ctx.actor.role != "admin":
        raise ApiError(403, "Forbidden.", "FORBIDDEN")
    brk = domain.open_break_of(ctx, record.id)
    if brk is not None:
        due = rules.break_due_end(rules.BreakSpan(brk.started_at, None, brk.limit_seconds))
        if due is not None and due <= ctx.now:
            brk = None
    return {"active": brk is not None, "start_time": iso(brk.started_at) if brk else None}


# ====================================================================== breaks


def break_status(ctx: Ctx, req: Req) -> Any:
    return domain.break_status(ctx, ctx.actor)


def break_start(ctx: Ctx, req: Req) -> Any:
    brk, limit = domain.start_break(ctx, req.b_str("type", max_len=30) or "Regular")
    return {
        "message": "Break started",
        "break": break_json(brk, ctx.now),
        "break_remaining_seconds": limit,
    }


def break_end(ctx: Ctx, req: Req) -> Any:
    brk = domain.end_break(ctx)
    data = break_json(brk, ctx.now)
    return {
        "message": "Break ended",
        "status": "success",
        "break": data,
        "duration_minutes": data["duration_minutes"],
        "warning": None,
    }


def break_history(ctx: Ctx, req: Req) -> Any:
    page, per_page = page_of(req, 20)
    stmt = select(Break)
    user = ctx.user
    assert user is not None
    if user.role != "admin":
        stmt = stmt.where(Break.user_id == user.id)
    elif req.q_int("user_id", 0, 0):
        stmt = stmt.where(Break.user_id == req.q_int("user_id", 0, 0))
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.db.scalars(
        stmt.order_by(Break.started_at.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    items = []
    for brk in rows:
        data = break_json(brk, ctx.now)
        owner = ctx.db.get(User, brk.user_id)
        data["user"] = user_resource(owner) if owner else None
        record = ctx.db.get(AttendanceRecord, brk.record_id)
        data["attendance"] = (
            {
                "id": record.id,
                "attendance_date": iso_date(record.work_date),
                "status": record.status,
                "session": {
                    "id": record.session_id,
                    "date": iso_date(record.session.work_date),
                    "schedule": schedule_json(record.session.schedule),
                },
            }
            if record
            else None
        )
        items.append(data)
    return paginate(items, total, page, per_page, req.path)


def breaks_update(ctx: Ctx, req: Req) -> Any:
    brk = find_one(ctx, Break, req.path_params["id"], "Break")
    start = req.b_datetime("break_start", ctx.tz)
    if start is None:
        raise validation_error("break_start", "The break start field is required.")
    btype = req.b_str("break_type", required=True, max_len=30)
    end = req.b_datetime("break_end", ctx.tz)
    if end is not None and end <= start:
        raise validation_error("break_end", "The break end must be after the break start.")
    others = [b for b in domain.breaks_of(ctx, [brk.record_id])[brk.record_id] if b.id != brk.id]
    used = rules.break_used_seconds(domain.spans_of(others), ctx.now)
    if used + ((end or ctx.now) - start).total_seconds() > int(ctx.setting("break_duration")) * 60:
        raise ApiError(400, "The breaks exceed the allowance.", "BREAK_LIMIT_EXCEEDED")
    brk.started_at, brk.ended_at, brk.break_type = start, end, btype or brk.break_type
    brk.limit_seconds = None if end is not None else brk.limit_seconds
    brk.end_reason = "admin" if end is not None else None
    brk.updated_at = ctx.now
    ctx.db.flush()
    record = ctx.db.get(AttendanceRecord, brk.record_id)
    assert record is not None
    ctx.audit("break_update", f"Break {brk.id} updated", model_type="Break", model_id=brk.id)
    domain.emit_break(ctx, record, brk, "admin_updated")
    return {
        "message": "Break updated",
        "break": break_json(brk, ctx.now),
        "record": domain.record_out(ctx, record),
    }


def breaks_destroy(ctx: Ctx, req: Req) -> Any:
    brk = find_one(ctx, Break, req.path_params["id"], "Break")
    record = ctx.db.get(AttendanceRecord, brk.record_id)
    assert record is not None
    domain.emit_break(ctx, record, brk, "admin_deleted")
    ctx.db.delete(brk)
    ctx.audit("break_delete", f"Break {brk.id} deleted", model_type="Break", model_id=brk.id)
    return {"message": "Break deleted"}


# ====================================================================== reports


def report_dashboard(ctx: Ctx, req: Req) -> Any:
    return domain.dashboard_stats(ctx)


def employee_dashboard(ctx: Ctx, req: Req) -> Any:
    return domain.employee_dashboard(ctx, ctx.actor)


def daily_rows(
    ctx: Ctx, day: date, search: str | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    records = (
        ctx.db.scalars(select(AttendanceRecord).where(AttendanceRecord.work_date == day))
        .unique()
        .all()
    )
    by_user = {r.user_id: r for r in records}
    breaks = domain.breaks_of(ctx, [r.id for r in records])
    op = domain.today(ctx)
    had_session = (
        ctx.db.scalar(
            select(AttendanceSession.id).where(AttendanceSession.work_date == day).limit(1)
        )
        is not None
    )
    users = ctx.db.scalars(
        select(User)
        .where(User.role == "employee", User.deleted_at.is_(None))
        .order_by(User.employee_code)
    ).all()
    rows = []
    summary = {"total": 0, "present": 0, "late": 0, "absent": 0, "pending": 0, "optional": 0}
    for user in users:
        if (
            search
            and search.lower()
            not in f"{user.first_name} {user.last_name} {user.employee_code}".lower()
        ):
            continue
        record = by_user.get(user.id)
        if record is None:
            if user.status != "active" or not (day == op or (day < op and had_session)):
                continue
            status = "optional" if rules.is_weekend(day) else ("pending" if day >= op else "absent")
            row = {
                "id": f"p-{user.id}",
                "user_id": user.id,
                "employee_id": user.employee_code,
                "name": f"{user.first_name} {user.last_name}",
                "status": status,
                "time_in": None,
                "time_out": None,
                "late_duration": None,
                "overtime": None,
                "hours_worked": 0,
                "date": iso_date(day),
            }
        else:
            spans = domain.spans_of(breaks[record.id])
            hours = rules.hours_worked(
                record.time_in,
                record.time_out,
                rules.break_used_seconds(spans, ctx.now),
                record.status,
            )
            status = record.status
            row = {
                "id": record.id,
                "user_id": user.id,
                "employee_id": user.employee_code,
                "name": f"{user.first_name} {user.last_name}",
                "status": status,
                "time_in": record.time_in.astimezone(ctx.tz).strftime("%H:%M")
                if record.time_in
                else None,
                "time_out": record.time_out.astimezone(ctx.tz).strftime("%H:%M")
                if record.time_out
                else None,
                "late_duration": f"{record.minutes_late}m" if record.minutes_late else None,
                "overtime": f"{record.overtime_minutes}m" if record.overtime_minutes else None,
                "hours_worked": hours,
                "date": iso_date(day),
            }
        rows.append(row)
        summary["total"] += 1
        key = {"left_early": "present", "excused": "absent"}.get(status, status)
        if key in summary:
            summary[key] += 1
    return rows, summary


def report_daily(ctx: Ctx, req: Req) -> Any:
    try:
        day = date.fromisoformat(str(req.path_params["date"]))
    except ValueError:
        raise validation_error("date", "The date must be YYYY-MM-DD.") from None
    rows, summary = daily_rows(ctx, day, req.q_str("search", 100))
    page, per_page = page_of(req, 20, REPORT_CAP)
    chunk = rows[(page - 1) * per_page : page * per_page]
    return {
        "date": iso_date(day),
        "summary": summary,
        "records": paginate(chunk, len(rows), page, per_page, req.path),
    }


def monthly_summary(ctx: Ctx, year: int, month: int) -> dict[str, Any]:
    first, last = date(year, month, 1), date(year, month, monthrange(year, month)[1])
    working = sum(
        1 for n in range((last - first).days + 1) if not rules.is_weekend(first + timedelta(days=n))
    )
    users = ctx.db.scalars(
        select(User).where(
            User.role == "employee", User.status == "active", User.deleted_at.is_(None)
        )
    ).all()
    summary = []
    for user in users:
        counts = dict(
            ctx.db.execute(
                select(AttendanceRecord.status, func.count())
                .where(
                    AttendanceRecord.user_id == user.id,
                    AttendanceRecord.work_date >= first,
                    AttendanceRecord.work_date <= last,
                )
                .group_by(AttendanceRecord.status)
            ).all()
        )
        present = counts.get("present", 0) + counts.get("left_early", 0) + counts.get("late", 0)
        rate = min(100, round(present / working * 100)) if working else 0
        summary.append(
            {
                "employee_id": user.employee_code,
                "user_id": user.id,
                "name": f"{user.first_name} {user.last_name}",
                "present": present,
                "late": counts.get("late", 0),
                "absent": counts.get("absent", 0),
                "attendance_rate": rate,
            }
        )
    summary.sort(key=lambda r: -int(str(r["attendance_rate"])))
    return {
        "year": year,
        "month": month,
        "working_days": working,
        "total_employees": len(users),
        "summary": summary,
    }


def report_monthly(ctx: Ctx, req: Req) -> Any:
    year, month = int(req.path_params["year"]), int(req.path_params["month"])
    if not (1 <= month <= 12 and 1970 <= year <= 9999):
        raise validation_error("month", "Invalid year or month.")
    return monthly_summary(ctx, year, month)


def employee_report(ctx: Ctx, req: Req, user: User) -> dict[str, Any]:
    counts = dict(
        ctx.db.execute(
            select(AttendanceRecord.status, func.count())
            .where(AttendanceRecord.user_id == user.id)
            .group_by(AttendanceRecord.status)
        ).all()
    )
    total = sum(counts.values())
    attended = counts.get("present", 0) + counts.get("left_early", 0) + counts.get("late", 0)
    stmt = select(AttendanceRecord).where(AttendanceRecord.user_id == user.id)
    return {
        "employee": user_resource(user),
        "stats": {
            "present": counts.get("present", 0) + counts.get("left_early", 0),
            "late": counts.get("late", 0),
            "absent": counts.get("absent", 0),
            "attendance_rate": round(attended / total * 100, 1) if total else 0,
        },
        "records": record_page(ctx, req, stmt, 10, REPORT_CAP),
    }


def report_employee(ctx: Ctx, req: Req) -> Any:
    code = str(req.path_params["code"])[:20]
    user = ctx.db.scalars(
        select(User).where(
            func.upper(User.employee_code) == code.upper(), User.deleted_at.is_(None)
        )
    ).first()
    if user is None:
        raise ApiError(404, "Employee not found.")
    return employee_report(ctx, req, user)


def report_personal(ctx: Ctx, req: Req) -> Any:
    return employee_report(ctx, req, ctx.actor)


def csv_response(filename: str, header: list[str], rows: list[list[Any]]) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


RECORD_HEADER = [
    "employee_id",
    "name",
    "work_date",
    "status",
    "time_in",
    "time_out",
    "minutes_late",
    "hours_worked",
    "overtime_minutes",
    "overtime_status",
]


def record_rows(ctx: Ctx, records: list[AttendanceRecord]) -> list[list[Any]]:
    breaks = domain.breaks_of(ctx, [r.id for r in records])
    out = []
    for r in records:
        used = rules.break_used_seconds(domain.spans_of(breaks[r.id]), ctx.now)
        out.append(
            [
                r.user.employee_code if r.user else "",
                f"{r.user.first_name} {r.user.last_name}" if r.user else "",
                iso_date(r.work_date),
                r.status,
                iso(r.time_in),
                iso(r.time_out),
                r.minutes_late,
                rules.hours_worked(r.time_in, r.time_out, used, r.status),
                r.overtime_minutes,
                r.overtime_status,
            ]
        )
    return out


def export_excel(ctx: Ctx, req: Req) -> Any:
    """CSV export of records (the original's 501 `export/excel`): `start_date`, `end_date`."""
    op = domain.today(ctx)
    start = req.q_date("start_date") or op.replace(day=1)
    end = req.q_date("end_date") or op
    records = (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(AttendanceRecord.work_date >= start, AttendanceRecord.work_date <= end)
            .order_by(AttendanceRecord.work_date, AttendanceRecord.id)
            .limit(100_000)
        )
        .unique()
        .all()
    )
    return csv_response(
        f"attendance_{start}_{end}.csv", RECORD_HEADER, record_rows(ctx, list(records))
    )


def export_personal(ctx: Ctx, req: Req) -> Any:
    records = (
        ctx.db.scalars(
            select(AttendanceRecord)
            .where(AttendanceRecord.user_id == ctx.actor.id)
            .order_by(AttendanceRecord.work_date)
        )
        .unique()
        .all()
    )
    return csv_response(
        f"my_attendance_{domain.today(ctx)}.csv", RECORD_HEADER, record_rows(ctx, list(records))
    )


# ====================================================================== audit


def audit_json(row: AuditLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "action": row.action,
        "model_type": row.model_type,
        "model_id": row.model_id,
        "description": row.description,
        "status": row.status,
        "severity": row.severity,
        "old_values": row.old_values,
        "new_values": row.new_values,
        "ip_address": row.ip_address,
        "user_agent": row.user_agent,
        "previous_hash": row.previous_hash,
        "hash": row.hash,
        "created_at": iso(row.created_at),
    }


ADMIN_ACTIONS = (
    "create_employee",
    "update_employee",
    "delete_employee",
    "activate_employee",
    "deactivate_employee",
    "create_schedule",
    "update_schedule",
    "delete_schedule",
    "activate_schedule",
    "deactivate_schedule",
    "create_session",
    "delete_session",
    "lock_session",
    "unlock_session",
    "create_attendance",
    "update_attendance",
    "delete_attendance",
    "break_update",
    "break_delete",
    "update_settings",
    "overtime_decision",
)
ATTENDANCE_ACTIONS = ("check_in", "check_out", "break_start", "break_end", "auto_tick")
LOGIN_ACTIONS = ("login", "logout", "login_failed", "login_rate_limited")


def audit_index(ctx: Ctx, req: Req) -> Any:
    return audit_page(ctx, req, select(AuditLog))


def audit_preset(
    actions: tuple[str, ...] | None = None, *, failed: bool = False, critical: bool = False
) -> Any:
    def handler(ctx: Ctx, req: Req) -> Any:
        stmt = select(AuditLog)
        if actions is not None:
            stmt = stmt.where(AuditLog.action.in_(actions))
        if failed:
            stmt = stmt.where(AuditLog.status == "failed")
        if critical:
            stmt = stmt.where(AuditLog.severity.in_(["high", "critical"]))
        return audit_page(ctx, req, stmt)

    return handler


def audit_by_user(ctx: Ctx, req: Req) -> Any:
    return audit_page(ctx, req, select(AuditLog).where(AuditLog.user_id == path_id(req)))


def audit_statistics(ctx: Ctx, req: Req) -> Any:
    end = req.q_date("end_date") or ctx.now.astimezone(ctx.tz).date()
    start = req.q_date("start_date") or end - timedelta(days=30)
    since = rules.local_instant(start, time(0, 0), ctx.tz)
    until = rules.local_instant(end + timedelta(days=1), time(0, 0), ctx.tz)
    window = (AuditLog.created_at >= since, AuditLog.created_at < until)

    def counts(column: Any) -> dict[str, int]:
        rows = ctx.db.execute(select(column, func.count()).where(*window).group_by(column))
        return {str(key): int(n) for key, n in rows.all()}

    top = ctx.db.execute(
        select(AuditLog.action, func.count().label("n"))
        .where(*window)
        .group_by(AuditLog.action)
        .order_by(func.count().desc(), AuditLog.action)
        .limit(10)
    ).all()
    return {
        "start_date": iso_date(start),
        "end_date": iso_date(end),
        "total": sum(counts(AuditLog.status).values()),
        "by_status": counts(AuditLog.status),
        "by_severity": counts(AuditLog.severity),
        "failed_logins": ctx.db.scalar(
            select(func.count()).where(*window, AuditLog.action == "login_failed")
        )
        or 0,
        "unique_ips": ctx.db.scalar(
            select(func.count(func.distinct(AuditLog.ip_address))).where(*window)
        )
        or 0,
        "top_actions": [{"action": a, "count": int(n)} for a, n in top],
    }


def audit_page(ctx: Ctx, req: Req, stmt: Any) -> Any:
    page, per_page = page_of(req, 20)
    for name, column in (
        ("action", AuditLog.action),
        ("model_type", AuditLog.model_type),
        ("status", AuditLog.status),
        ("severity", AuditLog.severity),
    ):
        value = req.q_str(name, 100)
        if value:
            stmt = stmt.where(column == value)
    if req.q_int("user_id", 0, 0):
        stmt = stmt.where(AuditLog.user_id == req.q_int("user_id", 0, 0))
    if req.q_str("failed_only") in ("1", "true"):
        stmt = stmt.where(AuditLog.status == "failed")
    if req.q_str("critical_only") in ("1", "true"):
        stmt = stmt.where(AuditLog.severity.in_(["high", "critical"]))
    search = req.q_str("search", 100)
    if search:
        stmt = stmt.where(func.lower(AuditLog.description).like(f"%{search.lower()}%"))
    total = ctx.db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.db.scalars(
        stmt.order_by(AuditLog.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return paginate([audit_json(r) for r in rows], total, page, per_page, req.path)


def verify_chain(ctx: Ctx) -> tuple[bool, int, int | None]:
    previous = None
    checked = 0
    for row in ctx.db.scalars(select(AuditLog).order_by(AuditLog.id)).yield_per(500):
        checked += 1
        if row.previous_hash != previous or audit_hash(row) != row.hash:
            return False, checked, row.id
        previous = row.hash
    return True, checked, None


def audit_verify(ctx: Ctx, req: Req) -> Any:
    valid, checked, broken = verify_chain(ctx)
    return {
        "chain_valid": valid,
        "logs_checked": checked,
        "broken_at_id": broken,
        "verified_at": iso(ctx.now),
    }


def audit_show(ctx: Ctx, req: Req) -> Any:
    row = find_one(ctx, AuditLog, req.path_params["id"], "Audit log")
    data = audit_json(row)
    data["integrity_valid"] = audit_hash(row) == row.hash
    return data


# ====================================================================== settings


def settings_update(ctx: Ctx, req: Req) -> Any:
    """Typed registry: every key validated, unknown keys refused (A1), every change audited."""
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


IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
MAX_LOGO_BYTES = 2 * 1024 * 1024


def store_image(ctx: Ctx, req: Req, field_name: str) -> str:
    """Store the uploaded image `field_name` and return its absolute URL."""
    reader = getattr(req.body.get(field_name), "file", None)
    if reader is None:
        raise validation_error(field_name, f"The {field_name} must be an uploaded file.")
    data = reader.read(MAX_LOGO_BYTES + 1)
    if len(data) > MAX_LOGO_BYTES:
        raise validation_error(
            field_name, f"The {field_name} may not be greater than 2048 kilobytes."
        )
    kind = next((t for sig, t in IMAGE_SIGNATURES.items() if data.startswith(sig)), None)
    if kind is None:
        raise validation_error(
            field_name, f"The {field_name} must be a file of type: jpeg, png, jpg, gif."
        )
    media = Media(content_type=kind, data=data, created_at=ctx.now, created_by=ctx.actor.id)
    ctx.db.add(media)
    ctx.db.flush()
    return f"{req.base_url}/media/{media.id}"


def settings_logo(ctx: Ctx, req: Req) -> Any:
    """Multipart `logo`: PNG, JPEG or GIF (by content, not by name) up to 2 MB (A4: no SVG)."""
    url = store_image(ctx, req, "logo")
    row = ctx.db.get(Setting, "system_logo")
    if row is None:
        ctx.db.add(Setting(key="system_logo", value=url, updated_at=ctx.now))
    else:
        row.value, row.updated_at, row.updated_by = url, ctx.now, ctx.actor.id
    ctx.audit("update_settings", "Logo uploaded", model_type="Setting", new={"system_logo": url})
    return {"url": url, "message": "Logo uploaded successfully"}


def media_show(ctx: Ctx, req: Req) -> Any:
    media = find_one(ctx, Media, req.path_params["id"], "File")
    return Response(
        media.data,
        media_type=media.content_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=86400"},
    )


def settings_backup(ctx: Ctx, req: Req) -> Any:
    """Read-only export of the settings (no users, no audit rows: spec 7.3)."""
    return {"exported_at": iso(ctx.now), "settings": ctx.settings()}


# ====================================================================== broadcasting


def broadcasting_auth(ctx: Ctx, req: Req) -> Any:
    """Laravel's channel authorisation for pusher-js / Echo, signed with the pusher SDK:
    `private-user.{id}` only for that user, `private-admin.*` only for active admins."""
    socket_id = req.body.get("socket_id", req.query.get("socket_id"))
    channel = req.body.get("channel_name", req.query.get("channel_name"))
    if not isinstance(socket_id, str) or not isinstance(channel, str):
        raise ApiError(403, "Forbidden.")
    user = ctx.user
    assert user is not None
    allowed = False
    if channel.startswith("private-user."):
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
        return client.authenticate(channel=channel, socket_id=socket_id)
    except ValueError:
        raise ApiError(403, "Forbidden.") from None


# ====================================================================== route table

OBJ = "object"
ID = "{id}"


def R(
    method: str,
    path: str,
    handler: Any,
    auth: str | None = "user",
    tag: str = "misc",
    summary: str = "",
    **kw: Any,
) -> RouteSpec:
    return RouteSpec(
        method,
        path,
        handler,
        auth,
        summary or (handler.__doc__ or "").split("\n")[0] or handler.__name__.replace("_", " "),
        tag,
        **kw,
    )


def S(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}

AUDIT_QUERY = {
    "action": "string",
    "user_id": "integer",
    "status": "string",
    "severity": "string",
    "search": "string",
    "page": "integer",
    "per_page": "integer",
}

ROUTES: list[RouteSpec] = [
    R("GET", "/api/health", health, None, "public"),
    R("GET", "/api/settings", public_settings, None, "public"),
    R(
        "POST",
        "/api/auth/login",
        login,
        None,
        "auth",
        body=S(
            email=STR, password=STR, login_type={"type": "string", "enum": ["admin", "employee"]}
        ),
    ),
    R("GET", "/api/auth/password-policy", password_policy, None, "auth"),
    R("POST", "/api/auth/logout", logout, tag="auth"),
    R("POST", "/api/auth/heartbeat", heartbeat, tag="auth"),
    R("GET", "/api/auth/me", me, tag="auth"),
    R("POST", "/api/auth/refresh", refresh, tag="auth"),
    R(
        "POST",
        "/api/auth/update-profile",
        update_profile,
        tag="auth",
        body=S(first_name=STR, last_name=STR, email=STR),
    ),
    R(
        "POST",
        "/api/auth/change-password",
        change_password,
        tag="auth",
        body=S(current_password=STR, password=STR, password_confirmation=STR),
    ),
    R("GET", "/api/notifications", notifications_index, tag="notifications", returns="array"),
    R("PATCH", "/api/notifications/{notification_id}/read", notification_read, tag="notifications"),
    R("POST", "/api/notifications/read-all", notifications_read_all, tag="notifications"),
    R("GET", "/api/employees/next-id", employees_next_id, "admin", "employees"),
    R(
        "GET",
        "/api/employees",
        employees_index,
        "admin",
        "employees",
        query={"search": "string", "status": "string", "page": "integer", "per_page": "integer"},
    ),
    R(
        "POST",
        "/api/employees",
        employees_store,
        "admin",
        "employees",
        status=201,
        body=S(
            employee_id=STR,
            first_name=STR,
            last_name=STR,
            email=STR,
            password=STR,
            password_confirmation=STR,
            position=STR,
            department=STR,
            employee_type=STR,
        ),
    ),
    R(
        "GET",
        "/api/employees-deactivated",
        employees_deactivated,
        "admin",
        "employees",
        query={"search": "string", "page": "integer", "per_page": "integer"},
    ),
    R("GET", "/api/employees/by-employee-id/{code}", employees_by_code, "admin", "employees"),
    R("GET", "/api/employees/{id}", employees_show, "admin", "employees"),
    R(
        "PUT",
        "/api/employees/{id}",
        employees_update,
        "admin",
        "employees",
        body=S(first_name=STR, last_name=STR, email=STR, status=STR, position=STR),
    ),
    R(
        "PATCH",
        "/api/employees/{id}",
        employees_update,
        "admin",
        "employees",
        body=S(first_name=STR, last_name=STR, email=STR, status=STR, position=STR),
    ),
    R("DELETE", "/api/employees/{id}", employees_destroy, "admin", "employees"),
    R("PATCH", "/api/employees/{id}/toggle-status", employees_toggle, "admin", "employees"),
    R(
        "GET",
        "/api/schedules",
        schedules_index,
        "admin",
        "schedules",
        query={"search": "string", "status": "string", "page": "integer", "per_page": "integer"},
    ),
    R(
        "POST",
        "/api/schedules",
        schedules_store,
        "admin",
        "schedules",
        status=201,
        body=S(name=STR, time_in=STR, time_out=STR, break_time=STR, grace_period_minutes=INT),
    ),
    R("GET", "/api/schedules/{id}", schedules_show, "admin", "schedules"),
    R(
        "PUT",
        "/api/schedules/{id}",
        schedules_update,
        "admin",
        "schedules",
        body=S(name=STR, time_in=STR, time_out=STR, grace_period_minutes=INT, status=STR),
    ),
    R("DELETE", "/api/schedules/{id}", schedules_destroy, "admin", "schedules"),
    R("PATCH", "/api/schedules/{id}/toggle-status", schedules_toggle, "admin", "schedules"),
    R("GET", "/api/attendance-sessions/active", sessions_active, tag="sessions", returns="array"),
    R("GET", "/api/attendance-sessions/today", sessions_today, tag="sessions", returns="array"),
    R(
        "GET",
        "/api/attendance-sessions",
        sessions_index,
        "admin",
        "sessions",
        query={
            "status": "string",
            "date": "string",
            "schedule_id": "integer",
            "page": "integer",
            "per_page": "integer",
        },
    ),
    R(
        "POST",
        "/api/attendance-sessions",
        sessions_store,
        "admin",
        "sessions",
        status=201,
        body=S(schedule_id=INT, date=STR, employee_ids={"type": "array", "items": INT}),
    ),
    R("GET", "/api/attendance-sessions/{id}", sessions_show, "admin", "sessions"),
    R("DELETE", "/api/attendance-sessions/{id}", sessions_destroy, "admin", "sessions"),
    R(
        "PATCH",
        "/api/attendance-sessions/{id}/lock",
        sessions_lock,
        "admin",
        "sessions",
        body=S(attendance_required=BOOL, session_type=STR),
    ),
    R("PATCH", "/api/attendance-sessions/{id}/unlock", sessions_unlock, "admin", "sessions"),
    R(
        "GET",
        "/api/attendance-records/my-records",
        my_records,
        tag="records",
        query={
            "status": "string",
            "start_date": "string",
            "end_date": "string",
            "month": "integer",
            "year": "integer",
            "page": "integer",
            "per_page": "integer",
        },
    ),
    R(
        "POST",
        "/api/attendance-records/confirm/{session_id}",
        confirm,
        tag="records",
        body=S(device_type=STR, device_name=STR, browser=STR, os=STR),
    ),
    R("POST", "/api/attendance-records/{id}/check-out", check_out, tag="records"),
    R("GET", "/api/attendance-records/can-confirm/{session_id}", can_confirm, tag="records"),
    R("GET", "/api/break-rules", break_rules, None, "public"),
    R("POST", "/api/attendance-records/{id}/break/end", record_break_end, tag="records"),
    R("GET", "/api/attendance-records/{id}/break/active", record_break_active, tag="records"),
    R(
        "PATCH",
        "/api/attendance-records/{id}/overtime",
        records_overtime,
        "admin",
        "records",
        body=S(decision={"type": "string", "enum": ["approved", "rejected"]}),
    ),
    R(
        "GET",
        "/api/attendance-records/by-session/{id}",
        records_by_session,
        "admin",
        "records",
        returns="array",
    ),
    R("GET", "/api/attendance-records/by-employee/{id}", records_by_employee, "admin", "records"),
    R(
        "GET",
        "/api/attendance-records",
        records_index,
        "admin",
        "records",
        query={
            "status": "string",
            "date": "string",
            "start_date": "string",
            "end_date": "string",
            "search": "string",
            "page": "integer",
            "per_page": "integer",
        },
    ),
    R(
        "POST",
        "/api/attendance-records",
        records_store,
        "admin",
        "records",
        status=201,
        body=S(
            user_id=INT,
            session_id=INT,
            attendance_date=STR,
            status=STR,
            reason=STR,
            time_in=STR,
            time_out=STR,
        ),
    ),
    R("GET", "/api/attendance-records/{id}", record_show, "admin", "records"),
    R(
        "PUT",
        "/api/attendance-records/{id}",
        records_update,
        "admin",
        "records",
        body=S(reason=STR, status=STR, time_in=STR, time_out=STR, break_start=STR, break_end=STR),
    ),
    R("DELETE", "/api/attendance-records/{id}", records_destroy, "admin", "records"),
    R("GET", "/api/break/status", break_status, tag="breaks"),
    R("POST", "/api/break/start", break_start, tag="breaks", body=S(type=STR)),
    R("POST", "/api/break/end", break_end, tag="breaks"),
    R(
        "GET",
        "/api/break/history",
        break_history,
        tag="breaks",
        query={"user_id": "integer", "page": "integer", "per_page": "integer"},
    ),
    R(
        "PUT",
        "/api/breaks/{id}",
        breaks_update,
        "admin",
        "breaks",
        body=S(break_start=STR, break_end=STR, break_type=STR),
    ),
    R("DELETE", "/api/breaks/{id}", breaks_destroy, "admin", "breaks"),
    R("GET", "/api/reports/dashboard", report_dashboard, "admin", "reports"),
    R("GET", "/api/reports/employee-dashboard", employee_dashboard, tag="reports"),
    R(
        "GET",
        "/api/reports/daily/{date}",
        report_daily,
        "admin",
        "reports",
        query={"search": "string", "page": "integer", "per_page": "integer"},
    ),
    R("GET", "/api/reports/monthly/{year}/{month}", report_monthly, "admin", "reports"),
    R(
        "GET",
        "/api/reports/employee/{code}",
        report_employee,
        "admin",
        "reports",
        query={"page": "integer", "per_page": "integer"},
    ),
    R(
        "GET",
        "/api/reports/personal",
        report_personal,
        tag="reports",
        query={"page": "integer", "per_page": "integer"},
    ),
    R("GET", "/api/reports/personal/export", export_personal, tag="reports", returns="csv"),
    R(
        "GET",
        "/api/reports/export/excel",
        export_excel,
        "admin",
        "reports",
        returns="csv",
        query={"start_date": "string", "end_date": "string"},
    ),
    R("GET", "/api/audit-logs/verify-integrity", audit_verify, "admin", "audit"),
    R(
        "GET",
        "/api/audit-logs",
        audit_index,
        "admin",
        "audit",
        query={
            "action": "string",
            "user_id": "integer",
            "status": "string",
            "severity": "string",
            "search": "string",
            "page": "integer",
            "per_page": "integer",
        },
    ),
    R(
        "GET",
        "/api/audit-logs/admin",
        audit_preset(ADMIN_ACTIONS),
        "admin",
        "audit",
        summary="admin actions",
        query=AUDIT_QUERY,
    ),
    R(
        "GET",
        "/api/audit-logs/attendance",
        audit_preset(ATTENDANCE_ACTIONS),
        "admin",
        "audit",
        summary="attendance actions",
        query=AUDIT_QUERY,
    ),
    R(
        "GET",
        "/api/audit-logs/login",
        audit_preset(LOGIN_ACTIONS),
        "admin",
        "audit",
        summary="login activity",
        query=AUDIT_QUERY,
    ),
    R(
        "GET",
        "/api/audit-logs/failed",
        audit_preset(failed=True),
        "admin",
        "audit",
        summary="failed actions",
        query=AUDIT_QUERY,
    ),
    R(
        "GET",
        "/api/audit-logs/critical",
        audit_preset(critical=True),
        "admin",
        "audit",
        summary="critical events",
        query=AUDIT_QUERY,
    ),
    R(
        "GET",
        "/api/audit-logs/statistics",
        audit_statistics,
        "admin",
        "audit",
        query={"start_date": "string", "end_date": "string"},
    ),
    R("GET", "/api/audit-logs/by-user/{id}", audit_by_user, "admin", "audit", query=AUDIT_QUERY),
    R("GET", "/api/audit-logs/{id}", audit_show, "admin", "audit"),
    R(
        "POST",
        "/api/settings",
        settings_update,
        "admin",
        "settings",
        body={"type": "object", "additionalProperties": True},
    ),
    R(
        "PUT",
        "/api/settings",
        settings_update,
        "admin",
        "settings",
        body={"type": "object", "additionalProperties": True},
    ),
    R("GET", "/api/settings/backup", settings_backup, "admin", "settings"),
    R(
        "POST",
        "/api/settings/logo",
        settings_logo,
        "admin",
        "settings",
        body={"type": "object", "properties": {"logo": {"type": "string", "format": "binary"}}},
        body_type="multipart/form-data",
    ),
    R("GET", "/media/{id}", media_show, None, "public", returns="image"),
    R(
        "POST",
        "/api/broadcasting/auth",
        broadcasting_auth,
        tag="broadcasting",
        body=S(socket_id=STR, channel_name=STR),
    ),
    R(
        "POST",
        "/broadcasting/auth",
        broadcasting_auth,
        tag="broadcasting",
        body=S(socket_id=STR, channel_name=STR),
    ),
    R("GET", "/api/broadcasting/auth", broadcasting_auth, tag="broadcasting", write=False),
]

INT_PARAMS = {"id", "session_id", "year", "month"}
