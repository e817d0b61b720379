"""Case registry, results and assertion helpers of the conformance suite.

A case is an ``async def`` taking the run context; it passes by returning, fails by raising
:class:`CaseFailed` (or any other exception), and is not applicable by raising
:class:`NotApplicable` with the reason. Every case names the spec section it checks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

PASS = "PASS"
FAIL = "FAIL"
NA = "N/A"


class CaseFailed(AssertionError):
    """The server's behaviour differs from the spec."""


class NotApplicable(Exception):
    """The case does not apply to this server or run (optional feature, missing option)."""


CaseFn = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    id: str
    section: str
    title: str
    fn: CaseFn
    timeout: float = 30.0
    background: bool = False  # runs concurrently with the rest (long, idle-time cases)
    browser: bool = False
    last: bool = False  # disruptive cases (server restart) run after everything else


@dataclass
class Result:
    case: Case
    result: str
    reason: str
    seconds: float = 0.0


REGISTRY: list[Case] = []


def case(
    case_id: str,
    section: str,
    title: str,
    *,
    timeout: float = 30.0,
    background: bool = False,
    browser: bool = False,
    last: bool = False,
) -> Callable[[CaseFn], CaseFn]:
    """Register a case. ``section`` is the spec section, e.g. ``"7.5"``."""

    def register(fn: CaseFn) -> CaseFn:
        if any(c.id == case_id for c in REGISTRY):
            raise ValueError(f"duplicate case id {case_id}")
        REGISTRY.append(Case(case_id, section, title, fn, timeout, background, browser, last))
        return fn

    return register


def select(cases: list[Case], patterns: list[str]) -> list[Case]:
    """Cases whose id matches any glob pattern (or contains it as a substring)."""
    if not patterns:
        return list(cases)
    return [
        c for c in cases
        if any(fnmatch.fnmatchcase(c.id, p) or p in c.id for p in patterns)
    ]


def fail(message: str) -> None:
    raise CaseFailed(message)


def check(condition: object, message: str) -> None:
    if not condition:
        raise CaseFailed(message)


def check_eq(got: object, expected: object, what: str) -> None:
    if got != expected:
        raise CaseFailed(f"{what}: expected {expected!r}, got {got!r}")


def short(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
