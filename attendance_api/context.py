"""One unit of work: a database transaction with its clock, actor, settings, audit writer
and the events it will publish (written to the outbox in the same transaction)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from . import settings_registry as registry
from .models import AuditLog, Notification, OutboxEvent, Setting, User
from .serialize import iso

MAX_EVENT_BYTES = 10_000

SEVERITY = {
    "login_failed": "low",
    "login_rate_limited": "medium",
    "password_change": "medium",
    "delete_employee": "high",
    "deactivate_employee": "medium",
    "delete_session": "high",
    "lock_session": "medium",
    "unlock_session": "medium",
    "delete_attendance": "high",
    "update_attendance": "medium",
    "update_settings": "medium",
    "break_delete": "medium",
    "overtime_decision": "medium",
}


class ApiError(Exception):
    """An error answer: `{message, error_code?, errors?}` with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        error_code: str | None = None,
        errors: dict[str, list[str]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.errors = errors
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.error_code:
            out["error_code"] = self.error_code
        if self.errors:
            out["errors"] = self.errors
        out.update(self.extra)
        return out


def validation_error(field_name: str, message: str) -> ApiError:
    return ApiError(422, message, errors={field_name: [message]})


@dataclass
class Ctx:
    db: Session
    now: datetime
    user: User | None = None
    ip: str | None = None
    user_agent: str | None = None
    runtime: Any = None
    token: Any = None
    dashboard_dirty: bool = False
    outgoing: list[OutboxEvent] = field(default_factory=list)
    events: int = 0
    _settings: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def actor(self) -> User:
        """The authenticated user (routes with auth only)."""
        if self.user is None:
            raise ApiError(401, "Unauthenticated.")
        return self.user

    # settings ---------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        if self._settings is None:
            values = {spec.key: spec.default for spec in registry.REGISTRY.values()}
            for row in self.db.scalars(select(Setting)):
                if row.key in registry.REGISTRY:
                    values[row.key] = row.value
            self._settings = values
        return self._settings

    def setting(self, key: str) -> Any:
        return self.settings()[registry.canonical_key(key)]

    def invalidate_settings(self) -> None:
        self._settings = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.setting("timezone"))

    def absent_time(self) -> time:
        hh, mm = str(self.setting("auto_absent_time")).split(":")
        return time(int(hh), int(mm))

    # realtime ---------------------------------------------------------------
    def write_outbox(self) -> None:
        """Insert the queued events just before commit. On PostgreSQL a transaction-scoped
        advisory lock, taken after every row lock of the transaction, makes outbox ids follow
        commit order, so the dispatcher (which delivers in id order) never sees a lower id
        appear after a higher one. SQLite writers are already serialised."""
        if not self.outgoing:
            return
        if self.db.get_bind().dialect.name == "postgresql":
            self.db.execute(text("SELECT pg_advisory_xact_lock(727004)"))
        self.db.add_all(self.outgoing)
        self.outgoing = []
        self.db.flush()

    def emit(self, event: str, channels: list[str], payload: dict[str, Any]) -> None:
        """Queue one trigger in the outbox; it is published after this transaction commits."""
        payload = {**payload, "timestamp": iso(self.now)}
        body = json.dumps(payload, separators=(",", ":"), default=str)
        if len(body.encode()) > MAX_EVENT_BYTES:
            raise ValueError(f"event {event} is {len(body)} bytes, over the 10 KB limit")
        self.outgoing.append(
            OutboxEvent(
                channels=channels,
                event=event,
                payload=body,
                created_at=self.now,
                state="pending",
                attempts=0,
            )
        )
        self.events += 1
        if event in ("attendance.updated", "break.updated", "session.updated"):
            self.dashboard_dirty = True

    # notifications ----------------------------------------------------------
    def notify_admins(
        self, kind: str, title: str, message: str, record_id: int | None, user_id: int | None
    ) -> None:
        """Store an in-app notification for every active admin and announce it (7.4)."""
        if not self.setting("notify_inapp"):
            return
        admins = self.db.scalars(
            select(User).where(
                User.role == "admin", User.status == "active", User.deleted_at.is_(None)
            )
        ).all()
        for admin in admins:
            note = Notification(
                id=str(uuid.uuid4()),
                user_id=admin.id,
                type=kind,
                created_at=self.now,
                data={
                    "type": kind,
                    "title": title,
                    "message": message,
                    "record_id": record_id,
                    "user_id": user_id,
                    "time": iso(self.now),
                },
            )
            self.db.add(note)
            self.emit(
                "notification.created",
                [f"private-user.{admin.id}"],
                {
                    "id": note.id,
                    "type": note.type,
                    "data": note.data,
                    "read_at": None,
                    "created_at": iso(note.created_at),
                },
            )

    # audit ------------------------------------------------------------------
    def audit(
        self,
        action: str,
        description: str,
        *,
        model_type: str | None = None,
        model_id: Any = None,
        status: str = "success",
        old: dict[str, Any] | None = None,
        new: dict[str, Any] | None = None,
        actor_id: int | None = None,
    ) -> None:
        """Append one hash-chained audit row, serialised so the chain never forks.

        docs/attendance.md, fix F5."""
        if self.db.get_bind().dialect.name == "postgresql":
            self.db.execute(text("SELECT pg_advisory_xact_lock(727001)"))
        previous = self.db.scalar(select(AuditLog.hash).order_by(AuditLog.id.desc()).limit(1))
        severity = SEVERITY.get(action, "info")
        if status == "failed" and severity == "info":
            severity = "low"
        user_id = actor_id if actor_id is not None else (self.user.id if self.user else None)
        row = AuditLog(
            created_at=self.now,
            user_id=user_id,
            action=action,
            model_type=model_type,
            model_id=None if model_id is None else str(model_id),
            description=description[:2000],
            status=status,
            severity=severity,
            old_values=old,
            new_values=new,
            ip_address=self.ip,
            user_agent=(self.user_agent or "")[:500] or None,
            previous_hash=previous,
        )
        row.hash = audit_hash(row)
        self.db.add(row)
        self.db.flush()


def audit_hash(row: AuditLog) -> str:
    material = json.dumps(
        [
            row.user_id,
            row.action,
            row.description,
            row.status,
            row.ip_address,
            iso(row.created_at),
            row.previous_hash,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()
