"""The HTTP shell: request parsing, bearer authentication, role checks, input validation, and
the route declaration that both Starlette and the OpenAPI document are built from."""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .context import ApiError, Ctx, validation_error
from .models import ApiToken, User
from .runtime import Runtime
from .security import hash_token_secret, split_bearer

log = logging.getLogger("attendance_api.http")

UNAUTHENTICATED = ApiError(401, "Unauthenticated.")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,60}$")


@dataclass
class Req:
    method: str
    path: str
    path_params: dict[str, Any]
    query: dict[str, str]
    body: dict[str, Any]
    headers: dict[str, str]
    ip: str | None
    raw_body: bytes = b""
    base_url: str = ""

    # ------------------------------------------------------------ query helpers
    def q_int(self, name: str, default: int, lo: int = 1, hi: int = 10**9) -> int:
        raw = self.query.get(name)
        # ASCII digits only: str.isdigit() accepts "¹", which int() refuses.
        if raw is None or not re.fullmatch(r"\s*-?[0-9]+\s*", raw):
            return default
        return max(lo, min(hi, int(raw)))

    def q_str(self, name: str, max_len: int = 200) -> str | None:
        raw = self.query.get(name)
        if raw is None or raw.strip() == "":
            return None
        return raw.strip()[:max_len]

    def q_date(self, name: str) -> date | None:
        raw = self.q_str(name)
        if raw is None:
            return None
        try:
            return date.fromisoformat(raw[:10])
        except ValueError:
            raise validation_error(name, f"The {name} must be a date (YYYY-MM-DD).") from None

    # ------------------------------------------------------------ body helpers
    def has(self, name: str) -> bool:
        return name in self.body and self.body[name] is not None and self.body[name] != ""

    def b_str(
        self, name: str, *, required: bool = False, max_len: int = 255, min_len: int = 0
    ) -> str | None:
        value = self.body.get(name)
        if value is None or (isinstance(value, str) and value.strip() == ""):
            if required:
                raise validation_error(name, f"The {name} field is required.")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise validation_error(name, f"The {name} must be a string.")
        text = str(value).strip()
        if len(text) > max_len:
            raise validation_error(
                name, f"The {name} may not be greater than {max_len} characters."
            )
        if len(text) < min_len:
            raise validation_error(name, f"The {name} must be at least {min_len} characters.")
        return text

    def b_int(
        self, name: str, *, required: bool = False, lo: int = 0, hi: int = 2**31 - 1
    ) -> int | None:
        value = self.body.get(name)
        if value is None or value == "":
            if required:
                raise validation_error(name, f"The {name} field is required.")
            return None
        if isinstance(value, bool):
            raise validation_error(name, f"The {name} must be an integer.")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise validation_error(name, f"The {name} must be an integer.") from None
        if not lo <= number <= hi:
            raise validation_error(name, f"The {name} must be between {lo} and {hi}.")
        return number

    def b_bool(self, name: str) -> bool | None:
        value = self.body.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise validation_error(name, f"The {name} field must be true or false.")

    def b_date(self, name: str, *, required: bool = False) -> date | None:
        text = self.b_str(name, required=required, max_len=40)
        if text is None:
            return None
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            raise validation_error(name, f"The {name} is not a valid date.") from None

    def b_time(self, name: str, *, required: bool = False) -> time | None:
        text = self.b_str(name, required=required, max_len=8)
        if text is None:
            return None
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?", text)
        if not match:
            raise validation_error(name, f"The {name} must match the format H:i.")
        return time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))

    def b_email(self, name: str = "email", *, required: bool = False) -> str | None:
        text = self.b_str(name, required=required, max_len=255)
        if text is None:
            return None
        if not EMAIL_RE.match(text):
            raise validation_error(name, f"The {name} must be a valid email address.")
        return text.lower()

    def b_datetime(self, name: str, tz: Any) -> datetime | None:
        """Naive input datetimes are read in the organisation time zone.

        docs/attendance.md, "Compatibility with the original API"."""
        text = self.b_str(name, max_len=40)
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise validation_error(name, f"The {name} is not a valid date.") from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        return value


Handler = Callable[[Ctx, Req], Any]


@dataclass
class RouteSpec:
    method: str
    path: str  # OpenAPI form: /api/employees/{id}
    handler: Handler
    auth: str | None = "user"  # None | "user" | "admin"
    summary: str = ""
    tag: str = "misc"
    body: dict[str, Any] | None = None  # JSON schema of the request body
    query: dict[str, str] = field(default_factory=dict)
    status: int = 200
    returns: str = "object"  # "object" | "array" | "csv" | "image"
    body_type: str = "application/json"
    write: bool | None = None


def authenticate(ctx: Ctx, header: str | None) -> User:
    """Resolve `Authorization: Bearer <id>|<secret>`; re-check the user on every request."""
    if not header or not header.lower().startswith("bearer "):
        raise UNAUTHENTICATED
    parsed = split_bearer(header[7:].strip())
    if parsed is None:
        raise UNAUTHENTICATED
    token_id, secret = parsed
    token = ctx.db.get(ApiToken, token_id)
    if token is None or not hmac.compare_digest(token.secret_hash, hash_token_secret(secret)):
        raise UNAUTHENTICATED
    user = ctx.db.get(User, token.user_id)
    if user is None or user.deleted_at is not None or user.status != "active":
        raise ApiError(401, "Your account has been deactivated.", "ACCOUNT_DEACTIVATED")
    if token.revoked_at is not None or token.expires_at <= ctx.now:
        raise ended_session(ctx, token)
    ctx.token = token
    return user


def ended_session(ctx: Ctx, token: ApiToken) -> ApiError:
    """The 401 for a genuine token that no longer works, saying why, so a page can tell its
    user: a newer token of the same user (a sign-in elsewhere revokes the others), or the
    session ended (expired, inactivity, signed out). Only the token's holder learns this."""
    if token.revoked_at is not None:
        newer = ctx.db.scalar(
            select(ApiToken.id).where(
                ApiToken.user_id == token.user_id,
                ApiToken.id != token.id,
                ApiToken.created_at >= token.revoked_at,
            )
        )
        if newer is not None:
            return ApiError(
                401, "You signed in somewhere else, so this session ended.", "SIGNED_IN_ELSEWHERE"
            )
    return ApiError(401, "Your session has expired. Please sign in again.", "SESSION_EXPIRED")


def strip_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL: drop it from every incoming string."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    return value


async def read_body(request: Request) -> tuple[dict[str, Any], bytes]:
    if request.method in ("GET", "HEAD", "DELETE") and not request.headers.get("content-length"):
        return {}, b""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.form(max_files=2, max_fields=200)
        except Exception:
            raise ApiError(400, "Malformed form body.") from None
        return {strip_nul(k): strip_nul(v) for k, v in form.items()}, b""
    raw = await request.body()
    if not raw.strip():
        return {}, raw
    if ctype == "text/csv":
        return {}, raw
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Malformed JSON body.") from None
    if not isinstance(parsed, dict):
        raise ApiError(422, "The request body must be a JSON object.")
    return strip_nul(parsed), raw


def make_endpoint(spec: RouteSpec) -> Callable[[Request], Any]:
    write = spec.write if spec.write is not None else spec.method not in ("GET", "HEAD")

    async def endpoint(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        try:
            body, raw = await read_body(request)
            req = Req(
                method=request.method,
                path=request.url.path,
                path_params=strip_nul(dict(request.path_params)),
                query=strip_nul(dict(request.query_params)),
                body=body,
                headers={k.lower(): v for k, v in request.headers.items()},
                ip=request.client.host if request.client else None,
                raw_body=raw,
                base_url=str(request.base_url).rstrip("/"),
            )
            result = await run_in_threadpool(_call, runtime, spec, req, write)
        except ApiError as err:
            return JSONResponse(err.body(), status_code=err.status)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return JSONResponse({"message": "Server Error"}, status_code=500)
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple):
            status, payload = result
            return JSONResponse(payload, status_code=status)
        return JSONResponse(result, status_code=spec.status)

    endpoint.__name__ = spec.handler.__name__
    return endpoint


def _call(runtime: Runtime, spec: RouteSpec, req: Req, write: bool) -> Any:
    with runtime.unit(write=write, ip=req.ip, user_agent=req.headers.get("user-agent")) as ctx:
        ctx.runtime = runtime
        if spec.auth is not None:
            ctx.user = authenticate(ctx, req.headers.get("authorization"))
            if spec.auth == "admin" and ctx.user.role != "admin":
                raise ApiError(403, "Forbidden. Administrators only.", "FORBIDDEN")
        return spec.handler(ctx, req)


MAX_ID = 2**31 - 1


def path_id(req: Req, name: str = "id", what: str = "Resource") -> int:
    """A path id within the database integer range, else 404."""
    try:
        key = int(req.path_params[name])
    except (TypeError, ValueError, KeyError):
        raise ApiError(404, f"{what} not found.") from None
    if not 1 <= key <= MAX_ID:
        raise ApiError(404, f"{what} not found.")
    return key


def find_one(ctx: Ctx, model: Any, ident: Any, what: str) -> Any:
    try:
        key = int(ident)
    except (TypeError, ValueError):
        raise ApiError(404, f"{what} not found.") from None
    if not 1 <= key <= MAX_ID:
        raise ApiError(404, f"{what} not found.")
    row = ctx.db.get(model, key)
    if row is None or getattr(row, "deleted_at", None) is not None:
        raise ApiError(404, f"{what} not found.")
    return row


def online_ids(ctx: Ctx, user_ids: list[int]) -> set[int]:
    """A user is online when one of their live tokens was used within `session_timeout`."""
    from datetime import timedelta

    if not user_ids:
        return set()
    since = ctx.now - timedelta(minutes=int(ctx.setting("session_timeout")))
    return set(
        ctx.db.scalars(
            select(ApiToken.user_id).where(
                ApiToken.user_id.in_(user_ids),
                ApiToken.revoked_at.is_(None),
                ApiToken.last_used_at >= since,
            )
        ).all()
    )
