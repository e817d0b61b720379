"""Employee accounts as the admin manages them: list and search, next employee id,
create, show, update, activate/deactivate and delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from .. import domain, rules
from ..context import ApiError, Ctx, validation_error
from ..models import AttendanceRecord, User
from ..presence import presence_of
from ..security import hash_password, password_policy_errors
from ..serialize import iso, iso_date, paginate, user_resource
from ..web import Req, find_one, online_ids
from .accounts import ensure_email_free, revoke_tokens
from .common import page_of, raw_user


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
    presence = presence_of(ctx, [u.id for u in users])
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
        seen = presence.get(user.id)
        data["online_now"] = bool(seen and seen.online)
        data["last_presence_at"] = iso(seen.last_presence_at) if seen else None
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
    """Admins manage employees; another admin's account is not editable here
    (docs/attendance.md, fix F14)."""
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
