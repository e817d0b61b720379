"""Helpers shared by several route modules: the page window of a list request and
the plain (un-decorated) user shape."""

from __future__ import annotations

from typing import Any

from ..models import User
from ..serialize import user_resource
from ..web import Req

LIST_CAP = 200
REPORT_CAP = 5000


def page_of(req: Req, default: int, cap: int = LIST_CAP) -> tuple[int, int]:
    return req.q_int("page", 1, 1, 10**6), req.q_int("per_page", default, 1, cap)


def raw_user(user: User) -> dict[str, Any]:
    data = user_resource(user)
    data.pop("full_name")
    data.pop("is_online")
    return data
