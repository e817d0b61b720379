"""The typed settings registry (docs/attendance.md, "Settings registry"): every key the logic
or the UI reads.

Values are stored as JSON in the `settings` table. The seed inserts only missing keys, so
an admin's changes survive restarts (docs/attendance.md, fix F3). Unknown keys are refused
(422, fix F13).
`GET /api/settings` returns the flat string map the original frontend expects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingError(ValueError):
    pass


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise SettingError("must be a boolean")


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise SettingError("must be an integer")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise SettingError("must be an integer") from None
        if not lo <= number <= hi:
            raise SettingError(f"must be between {lo} and {hi}")
        return number

    return parse


def _str(max_len: int = 255) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise SettingError("must be a string")
        text = str(value)
        if len(text) > max_len:
            raise SettingError(f"must be at most {max_len} characters")
        return text

    return parse


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value)
        if text not in choices:
            raise SettingError("must be one of " + ", ".join(choices))
        return text

    return parse


def _hhmm(value: Any) -> str:
    text = str(value)
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
        raise SettingError("must be a time HH:MM")
    return text


def _tz(value: Any) -> str:
    text = str(value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingError("must be an IANA time zone name") from None
    return text


def _positions(value: Any) -> list[str]:
    if isinstance(value, str):
        import json

        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = [p.strip() for p in value.split(",") if p.strip()]
        value = parsed
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise SettingError("must be a list of strings")
    return [p[:100] for p in value][:100]


@dataclass(frozen=True, slots=True)
class SettingSpec:
    key: str
    parse: Callable[[Any], Any]
    default: Any
    group: str
    public: bool = True


_SPECS = [
    SettingSpec("company_name", _str(120), "QuickConn Virtual", "general"),
    SettingSpec("system_logo", _str(500), "", "general"),
    SettingSpec("language", _str(10), "en", "general"),
    SettingSpec("date_format", _choice("mdy", "dmy", "ymd"), "ymd", "general"),
    SettingSpec("time_format", _choice("12h", "24h"), "24h", "general"),
    SettingSpec("timezone", _tz, "Asia/Manila", "general"),
    SettingSpec("positions", _positions, ["Virtual Assistant", "Team Lead"], "general"),
    SettingSpec("shift_boundary_hour", _int(0, 23), 14, "attendance"),
    SettingSpec("grace_period", _int(0, 120), 15, "attendance"),
    SettingSpec("checkin_open_before", _int(0, 720), 300, "attendance"),
    SettingSpec("checkin_close_after", _int(0, 720), 150, "attendance"),
    SettingSpec("weekend_checkin", _bool, True, "attendance"),
    SettingSpec("auto_checkout", _bool, True, "attendance"),
    SettingSpec("auto_checkout_grace_hours", _int(0, 24), 1, "attendance"),
    SettingSpec("auto_absent_time", _hhmm, "01:00", "attendance"),
    SettingSpec("auto_create_sessions", _bool, False, "attendance"),
    SettingSpec("break_duration", _int(0, 600), 90, "break"),
    SettingSpec("max_breaks", _int(0, 50), 0, "break"),
    SettingSpec("allow_overtime", _bool, False, "attendance"),
    SettingSpec("min_overtime_minutes", _int(0, 600), 60, "attendance"),
    SettingSpec("ot_rounding", _choice("none", "15", "30", "60"), "none", "attendance"),
    SettingSpec("require_ot_approval", _bool, True, "attendance"),
    SettingSpec("break_alerts", _bool, True, "notifications"),
    SettingSpec("absent_alerts", _bool, True, "notifications"),
    SettingSpec("late_alerts", _bool, True, "notifications"),
    SettingSpec("notify_inapp", _bool, True, "notifications"),
    SettingSpec("notify_email", _bool, False, "notifications"),
    SettingSpec("session_timeout", _int(1, 1440), 30, "security"),
    SettingSpec("max_login_attempts", _int(1, 100), 5, "security"),
    SettingSpec("pass_min_length", _int(6, 128), 8, "security"),
    SettingSpec("pass_special_chars", _bool, True, "security"),
    SettingSpec(
        "retention_policy", _choice("6months", "1year", "3years", "forever"), "1year", "data"
    ),
]

REGISTRY: dict[str, SettingSpec] = {spec.key: spec for spec in _SPECS}
ALIASES = {"org_timezone": "timezone", "max_break_duration": "break_duration"}

# Legacy keys the UI renders: returned with fixed values, ignored on write
# (docs/attendance.md, "Settings registry").
FIXED_LEGACY: dict[str, str] = {
    "attendance_mode": "automatic",
    "prevent_duplicate_checkin": "1",
    "auto_end_break": "1",
    "prevent_overlap_break": "1",
    "allow_multi_checkin": "0",
    "late_threshold": "30",
    "2fa_enabled": "0",
    "notify_sms": "0",
    "overtime_rate": "1.25",
    "holiday_checkin": "1",
    "auto_resume": "0",
    # sent by the original settings pages; no logic reads them
    "prevent_duplicate": "1",
    "break_start_window": "",
    "break_end_window": "",
    "break_penalty": "0",
    "checkin_start": "",
    "checkin_end": "",
    "work_start": "",
    "work_end": "",
    "min_work_hours": "8",
    "allow_late_checkout": "0",
    "strict_mode": "1",
}

# Legacy switches whose behaviour is fixed by the decisions: the fixed value is accepted (the
# UI sends it back), any other value is refused with a reason instead of being ignored
# (docs/attendance.md, "Settings registry" and fix F13).
LOCKED_SWITCHES: dict[str, tuple[bool, str]] = {
    "prevent_duplicate": (True, "duplicate check-ins are always refused (one record a day)"),
    "prevent_duplicate_checkin": (
        True,
        "duplicate check-ins are always refused (one record a day)",
    ),
    "allow_multi_checkin": (False, "there is exactly one record per employee per work date"),
    "prevent_overlap_break": (True, "only one break can be open at a time"),
    "auto_end_break": (True, "breaks always end when the allowance is used"),
}


def check_legacy(key: str, value: Any) -> None:
    """Accept a legacy key's write when it does not ask for unsupported behaviour."""
    locked = LOCKED_SWITCHES.get(key)
    if locked is None:
        return
    try:
        wanted = _bool(value)
    except SettingError:
        raise SettingError("must be a boolean") from None
    if wanted != locked[0]:
        raise SettingError(f"cannot be changed: {locked[1]}")


# The original pages wrote the formats in two encodings: one is kept (docs/attendance.md,
# "Settings registry").
FORMAT_SPELLINGS = {
    "YYYY-MM-DD": "ymd",
    "MM/DD/YYYY": "mdy",
    "DD/MM/YYYY": "dmy",
    "24-hour": "24h",
    "12-hour": "12h",
}


def canonical_key(key: str) -> str:
    return ALIASES.get(key, key)


def parse_setting(key: str, value: Any) -> Any:
    """Validate one (key, value); raises SettingError naming the problem."""
    spec = REGISTRY.get(canonical_key(key))
    if spec is None:
        raise SettingError("is not a known setting")
    if spec.key in ("date_format", "time_format") and isinstance(value, str):
        value = FORMAT_SPELLINGS.get(value, value)
    return spec.parse(value)


def as_public_string(value: Any) -> str:
    """The flat-string encoding of the original API: booleans as "1"/"0", lists as JSON."""
    import json

    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def public_settings(values: dict[str, Any]) -> dict[str, str]:
    out = dict(FIXED_LEGACY)
    for key, spec in REGISTRY.items():
        if spec.public:
            out[key] = as_public_string(values.get(key, spec.default))
    out["org_timezone"] = out["timezone"]
    out["max_break_duration"] = out["break_duration"]
    return out
