"""Passwords (scrypt, a standard KDF from hashlib), bearer tokens stored hashed, and the
login throttle (per account and per IP: docs/attendance.md, fix F6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections import deque
from datetime import datetime, timedelta

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
TOKEN_LIFETIME = timedelta(days=7)


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$hash`, salt and hash base64."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    encoded = (base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encoded[0]}${encoded[1]}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(hash_b64)
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt_b64),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


# A hash to compare against when the account does not exist, so timing does not tell.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def new_token_secret() -> str:
    return secrets.token_urlsafe(36)


def hash_token_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_bearer(plaintext: str) -> tuple[int, str] | None:
    """`<id>|<secret>` -> (id, secret), or None when malformed."""
    token_id, sep, secret = plaintext.partition("|")
    if not sep or not (token_id.isascii() and token_id.isdigit()) or not secret \
            or len(token_id) > 18:
        return None
    return int(token_id), secret


def password_policy_errors(password: str, min_length: int, special: bool) -> list[str]:
    errors = []
    if len(password) < min_length:
        errors.append(f"The password must be at least {min_length} characters.")
    if special and password.isalnum():
        errors.append("The password must contain at least one special character.")
    if len(password) > 256:
        errors.append("The password must be at most 256 characters.")
    return errors


class LoginThrottle:
    """Sliding one-minute windows of *failed* logins, keyed per account and per IP.

    An account is locked after `max_login_attempts` failures (from any IP); an IP only after
    `ip_limit` failures, so one office NAT can still log everyone in at shift start."""

    def __init__(self, window: timedelta = timedelta(minutes=1), ip_limit: int = 30) -> None:
        self.window = window
        self.ip_limit = ip_limit
        self._fails: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        bucket = self._fails.setdefault(key, deque())
        while bucket and bucket[0] <= now - self.window:
            bucket.popleft()
        return bucket

    def blocked(self, email: str, ip: str, now: datetime, account_limit: int) -> int | None:
        """Seconds to wait when blocked, else None."""
        with self._lock:
            for key, limit in ((f"acct:{email}", account_limit), (f"ip:{ip}", self.ip_limit)):
                bucket = self._recent(key, now)
                if len(bucket) >= limit:
                    return max(1, int((bucket[0] + self.window - now).total_seconds()) + 1)
        return None

    def record_failure(self, email: str, ip: str, now: datetime) -> None:
        with self._lock:
            for key in (f"acct:{email}", f"ip:{ip}"):
                self._recent(key, now).append(now)

    def record_success(self, email: str) -> None:
        with self._lock:
            self._fails.pop(f"acct:{email}", None)
