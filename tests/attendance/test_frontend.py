"""The web frontend in a real Chromium, against attendance_api and pusherd run as real
processes: live updates over the WebSocket, the connection indicator and polling through a
pusherd outage (killed, then silently stopped), revalidation on subscribe and on reconnect,
role-scoped subscriptions, sign-out and forced sign-outs that say why, keyboard focus through
actions, the organisation's date and time format whatever the browser's, and the layout at
phone width.

Screenshots land in artifacts/frontend/ (git-ignored) for a human to look at."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.support.pusherd_process import PusherdProcess, run_pusherd

from .e2e_support import free_port, pusherd_config
from .frontend_support import ARTIFACTS, ApiProcess, Browser, build_frontend, run_api

CONNECTED = '.connection[data-status="connected"]'
TODAY = '[data-testid="today-attendance"] tbody th'
# pusherd's webhook grace here (flap suppression; 3 s by default): short, so that a sign-out
# shows quickly, yet long enough for a page reload to rejoin on a busy machine
GRACE = 2.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    build_frontend()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = Browser()
    yield driver
    driver.close()


class Stack:
    """pusherd + attendance_api (demo data) + the shared browser, for one test."""

    def __init__(self, tmp: Path, browser: Browser, exits: ExitStack, port: int = 0) -> None:
        self.tmp, self.browser, self.exits = tmp, browser, exits
        browser.forget()
        self.port = port
        self.pages: list[str] = []
        # pusherd posts its presence webhooks to the API, as run.sh sets it up: the API's port
        # is chosen first
        self.api_port = free_port()
        self.pusherd = self.start_pusherd()
        self.api: ApiProcess = exits.enter_context(
            run_api(tmp, self.pusherd.port, port=self.api_port)
        )
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, int] = {}

    def start_pusherd(self) -> PusherdProcess:
        extra = ("--port", str(self.port)) if self.port else ()
        config = pusherd_config(self.port) + (
            f'\n[[apps.webhooks]]\nurl = "http://127.0.0.1:{self.api_port}/webhooks/pusher"\n'
            'event_types = ["member_added", "member_removed"]\n\n'
            f'[webhooks]\njournal = "{self.tmp / "webhooks.journal"}"\ngrace = {GRACE}\n'
            "retry_base = 0.2\nretry_max = 1.0\n"
        )
        return self.exits.enter_context(run_pusherd(config, extra_args=extra))

    def email(self, who: str) -> str:
        return f"{who}@demo.attendance.test"

    def login(self, who: str) -> str:
        """An API token for `who`. Signing in revokes that user's other tokens, so never for a
        user who is signed in in the browser."""
        if who not in self.tokens:
            response = httpx.post(
                f"{self.api.base}/api/auth/login",
                json={"email": self.email(who), "password": self.api.passwords[self.email(who)]},
            )
            assert response.status_code == 200, response.text
            self.tokens[who] = response.json()["token"]
            self.ids[who] = response.json()["user"]["id"]
        return self.tokens[who]

    def call(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.login(who)}", "Accept": "application/json"}
        return httpx.request(method, f"{self.api.base}{path}", headers=headers, timeout=30, **kw)

    def sign_in(
        self, page: str, who: str, query: str = "", viewport: Any = None, zone: str | None = None
    ) -> None:
        """Open the sign-in page at `/`, sign in through the form, wait for the live socket."""
        self.browser.call(
            "open", page=page, url=f"{self.api.base}/{query}", viewport=viewport, timezoneId=zone
        )
        self.pages.append(page)
        self.browser.call("wait", page=page, selector="h1", text="Sign in")
        self.browser.call("fill", page=page, selector="#email", value=self.email(who))
        self.browser.call(
            "fill", page=page, selector="#password", value=self.api.passwords[self.email(who)]
        )
        self.browser.call("press", page=page, key="Enter")  # the form works from the keyboard
        self.browser.call("wait", page=page, selector=CONNECTED, timeout=20000)

    def subscribed(self, page: str, channel: str, timeout: float = 20) -> dict[str, Any]:
        return self.browser.wait_for_event(
            lambda e: (
                e["type"] == "ws"
                and e["page"] == page
                and e["dir"] == "received"
                and '"pusher_internal:subscription_succeeded"' in e["data"]
                and f'"channel":"{channel}"' in e["data"]
            ),
            timeout,
        )

    def subscribed_since(self, page: str, channel: str, since: float) -> dict[str, Any]:
        """The first subscription of `page` to `channel` that succeeded at or after `since`."""
        return self.browser.wait_for_event(
            lambda e: (
                e["type"] == "ws"
                and e["page"] == page
                and e["dir"] == "received"
                and e["t"] >= since
                and '"pusher_internal:subscription_succeeded"' in e["data"]
                and f'"channel":"{channel}"' in e["data"]
            ),
            20,
        )

    def close(self) -> None:
        for page in self.pages:
            self.browser.call("close", page=page)


@pytest.fixture
def stack_factory(tmp_path: Path, browser: Browser) -> Iterator[Any]:
    with ExitStack() as exits:
        made: list[Stack] = []

        def make(port: int = 0) -> Stack:
            stack = Stack(tmp_path, browser, exits, port)
            made.append(stack)
            return stack

        yield make
        for stack in made:
            stack.close()


def event_frame(page: str, channel: str, event: str, since: float):  # type: ignore[no-untyped-def]
    return lambda e: (
        e["type"] == "ws"
        and e["page"] == page
        and e["dir"] == "received"
        and e["t"] >= since
        and f'"event":"{event}"' in e["data"]
        and f'"channel":"{channel}"' in e["data"]
    )


def shift_started_minutes_ago(stack: Stack, minutes: int) -> None:
    """Move the demo's running shift so that it started `minutes` ago (organisation time):
    a check-in now is late, a check-out now is early. Uses the admin's API token, so call it
    before the admin signs in in the browser."""
    zone = ZoneInfo(stack.call("GET", "/api/settings", "admin").json()["timezone"])
    now = datetime.now(zone)
    of_day = now.hour * 60 + now.minute
    if of_day < max(minutes + 1, 60) or of_day >= 22 * 60 + 30:
        # Just past midnight no shift of today started `minutes` ago. And from 22:30 the
        # demo's session list holds a second session of the "now" shift on today's date
        # and the break allowance runs into the day's end (seen at 23:09-23:45): this test
        # follows one ordinary day shift, which that window is not (the demo data around
        # midnight is an open item, not what this test is about).
        pytest.skip(
            f"the organisation's clock ({now:%H:%M}) is within the window around midnight "
            "(22:30-01:00) where the demo's running shift is not an ordinary day shift"
        )
    start = now - timedelta(minutes=minutes)
    end = start + timedelta(hours=8)
    schedules = stack.call("GET", "/api/schedules?per_page=50", "admin").json()["data"]
    demo = next(s for s in schedules if s["name"] == "Demo Shift (now)")
    moved = stack.call(
        "PUT",
        f"/api/schedules/{demo['id']}",
        "admin",
        json={
            "name": demo["name"],
            "time_in": start.strftime("%H:%M"),
            "time_out": end.strftime("%H:%M"),
            "grace_period_minutes": 15,
        },
    )
    assert moved.status_code == 200, moved.text


def test_the_admin_dashboard_follows_a_check_in_over_the_websocket(
    stack_factory: Any, browser: Browser
) -> None:
    stack = stack_factory()
    shift_started_minutes_ago(stack, 30)
    stack.sign_in("admin", "admin")
    stack.subscribed("admin", "private-admin.dashboard")
    stack.subscribed("admin", "attendance")
    sessions_subscribed = stack.subscribed("admin", "sessions")
    browser.call("wait", page="admin", selector="[data-testid=today-attendance] td", text="Nobody")
    browser.call("wait", page="admin", selector='[data-stat="pending_today"] dd', text="3")
    # what changed before a channel's subscription succeeded is fetched after it succeeded
    browser.wait_for_event(
        lambda e: bool(
            browser.requests("admin", "/api/attendance-sessions?", since=sessions_subscribed["t"])
        ),
        5,
    )
    # an admin's sign-in goes straight to the dashboard: no employee page on the way
    for employee_only in ("/api/reports/employee-dashboard", "/api/break/status"):
        assert browser.requests("admin", employee_only) == []

    # Ana's session, asked before she signs in in the browser: an API sign-in after that
    # would end her browser session (a sign-in elsewhere revokes the other tokens)
    ana_session = stack.call("GET", "/api/reports/employee-dashboard", "ana").json()
    ana_session_id = ana_session["active_session"]["id"]
    stack.sign_in("ana", "ana")
    ready = "[data-testid=attendance-action]:not([aria-disabled])"
    browser.call("wait", page="ana", selector=ready, text="Check in")
    assert browser.call("text", page="ana", selector="#checkin-hint").startswith(
        "Check-in is open: checking in now counts as late"
    )
    before = browser.call("now")
    # from the keyboard: the button keeps focus as "Check in" becomes "Check out"
    browser.call("focus", page="ana", selector=ready)
    browser.call("press", page="ana", key="Enter")

    # without a reload, the list and the stats of the admin's page follow. How fast is the
    # event path's business (the list is fetched when attendance.updated arrives; the stats
    # come in a dashboard.updated, at most one per 2 s by design, so up to 2 s after the
    # previous one, sent when Ana came online): the bound here only stops a test that would
    # otherwise hang on a loaded machine. What proves the WebSocket did it is below: no
    # request for the stats at all, and the list fetched only after its event arrived.
    browser.call("wait", page="admin", selector=TODAY, text="Ana Reyes", timeout=15000)
    browser.call(
        "wait", page="admin", selector='[data-stat="pending_today"] dd', text="2", timeout=15000
    )

    # ... and it was the WebSocket: the stats arrived in dashboard.updated with no request for
    # them, and the list was fetched only after attendance.updated arrived
    dash_event = browser.wait_for_event(
        event_frame("admin", "private-admin.dashboard", "dashboard.updated", before), 1
    )
    list_event = browser.wait_for_event(
        event_frame("admin", "attendance", "attendance.updated", before), 1
    )
    assert browser.requests("admin", "/api/reports/dashboard", since=before) == []
    fetched = browser.requests("admin", "/api/attendance-records?", since=before)
    assert fetched and all(r["t"] >= list_event["t"] for r in fetched), (fetched, list_event)
    assert dash_event["t"] >= before

    browser.call("wait", page="ana", selector=".badges .badge", text="Late")
    browser.call("wait", page="admin", selector='[data-stat="late_today"] dd', text="1")
    browser.call("wait", page="ana", selector="[data-testid=attendance-action]", text="Check out")
    assert browser.call("focused", page="ana") == "button:Check out"
    # the late check-in notified the admins: the dashboard's panel shows it, pushed to them
    browser.call("wait", page="admin", selector="[data-testid=notifications] li", timeout=15000)
    own = next(
        f["data"]["channel"]
        for f in browser.frames("admin", "sent")
        if f.get("event") == "pusher:subscribe" and f["data"]["channel"].startswith("private-user.")
    )
    assert browser.wait_for_event(event_frame("admin", own, "notification.created", before), 1)
    # the session's In column: checked in of the three employees expected
    # her session's own row (the list can hold two sessions of the "now" shift on one date)
    sessions_row = f"[data-testid=sessions] tr[data-session-id='{ana_session_id}']"
    browser.call(
        "wait", page="admin", selector=f"{sessions_row} [data-testid=session-in]", text="1/3"
    )
    # times in the organisation's default format (24 h), alike on both pages
    shown_in = browser.call(
        "text",
        page="ana",
        selector="xpath=//dt[normalize-space()='Checked in']/following-sibling::dd[1]",
    )
    assert re.fullmatch(r"\d{2}:\d{2}", shown_in), shown_in
    browser.call("wait", page="admin", selector=f"{TODAY} + td + td", text=shown_in)

    # a break from the keyboard: Enter starts it, focus stays, Enter again ends it
    browser.call("focus", page="ana", selector="[data-testid=break-action]")
    browser.call("press", page="ana", key="Enter")
    browser.call("wait", page="ana", selector="[data-testid=break-action]", text="End break")
    assert browser.call("focused", page="ana") == "button:End break"
    browser.call("press", page="ana", key="Enter")
    browser.call("wait", page="ana", selector="[data-testid=break-action]", text="Start break")
    assert browser.call("focused", page="ana") == "button:Start break"
    browser.call("screenshot", page="ana", path=str(ARTIFACTS / "employee-day.png"))

    # checking out 7 h 30 before the end (from the keyboard): late AND left early, on both pages
    browser.call("focus", page="ana", selector="button:has-text('Check out')")
    browser.call("press", page="ana", key="Enter")
    browser.call("wait", page="ana", selector=".badges .badge", text="Left early")
    assert browser.call("focused", page="ana") == "button:Checked out for today"
    assert "Late" in browser.call("text", page="ana", selector=".badges")
    browser.call(
        "wait", page="admin", selector='[data-stat="left_early_today"] dd', text="1", timeout=15000
    )
    assert browser.call("text", page="admin", selector='[data-stat="late_today"] dd') == "1"
    browser.call(
        "wait", page="admin", selector="[data-testid=today-attendance] td", text="Left early"
    )
    browser.call("screenshot", page="ana", path=str(ARTIFACTS / "employee-day-checked-out.png"))
    browser.call("screenshot", page="admin", path=str(ARTIFACTS / "admin-dashboard.png"))
    # the indicator, clicked, refreshes everything the page shows
    clicked = browser.call("now")
    browser.call("click", page="admin", selector=".connection")
    keys = (
        "/api/reports/dashboard",
        "/api/attendance-records?",
        "/api/attendance-sessions?",
        "/api/employees?",
    )
    browser.wait_for_event(
        lambda e: all(browser.requests("admin", key, since=clicked) for key in keys), 5
    )
    # session dates stay on one line at desktop width
    dates = browser.call(
        "boxes", page="admin", selector="[data-testid=sessions] tbody td.wide-only"
    )
    assert dates and not [d for d in dates if d["wraps"]], dates

    # Lock from the keyboard: focus stays on the row's button, now "Unlock"; Enter unlocks
    lock = "button[aria-label^='Lock Demo Shift (now)']"
    browser.call("focus", page="admin", selector=lock)
    browser.call("press", page="admin", key="Enter")
    browser.call("wait", page="admin", selector="button[aria-label^='Unlock Demo Shift (now)']")
    assert browser.call("focused", page="admin").startswith("button:Unlock Demo Shift (now)")
    browser.call("press", page="admin", key="Enter")
    browser.call("wait", page="admin", selector=lock)
    assert browser.call("focused", page="admin").startswith("button:Lock Demo Shift (now)")

    stack.sign_in("phone", "admin", viewport=[375, 812])
    browser.call("wait", page="phone", selector=TODAY, text="Ana Reyes")
    browser.call("wait", page="phone", selector="[data-testid=sessions] button")
    browser.call("screenshot", page="phone", path=str(ARTIFACTS / "admin-dashboard-phone.png"))
    # at phone width every table fits: no clipped Lock button, no hidden column
    for box in browser.call("boxes", page="phone", selector=".table-wrap"):
        assert not box["overflows"], box
    for box in browser.call("boxes", page="phone", selector="[data-testid=sessions] button"):
        assert box["right"] <= box["viewport"], box
    assert not [e for e in browser.snapshot() if e["type"] == "pageerror"]


def test_through_a_pusherd_outage_the_page_polls_then_revalidates_on_reconnect(
    stack_factory: Any, browser: Browser
) -> None:
    stack = stack_factory(port=free_port())
    session = stack.call("GET", "/api/reports/employee-dashboard", "ben").json()["active_session"]
    # fast attendance/dashboard polls for the outage; lists (sessions) never within the test
    # (and a 3 s activity + 2 s pong timeout, for the silent outage at the end)
    stack.sign_in(
        "admin",
        "admin",
        query="?poll_attendance=2&poll_dashboard=2&poll_lists=600&activity_timeout=3&pong_timeout=2",
    )
    stack.subscribed("admin", "attendance")
    sessions_row = "[data-testid=sessions] tr"
    browser.call("wait", page="admin", selector=sessions_row, text="Demo Shift (now)")
    # Ben's session's own row: the list can hold more than one session of the "now" shift
    # on one date (seen near the organisation's midnight), and only his gets the check-in
    ben_row = f"{sessions_row}[data-session-id='{session['id']}']"
    assert "0/3" in browser.call("text", page="admin", selector=ben_row)

    stopped = browser.call("now")
    stack.pusherd.stop()
    # pusher-js reports the loss; the indicator says so within the activity timeout (30 s)
    browser.call(
        "wait", page="admin", selector='.connection[data-status="unavailable"]', timeout=30000
    )
    closed = browser.wait_for_event(
        lambda e: e["type"] == "ws-close" and e["page"] == "admin" and e["t"] >= stopped, 1
    )

    checked_in = stack.call("POST", f"/api/attendance-records/confirm/{session['id']}", "ben")
    assert checked_in.status_code == 200, checked_in.text
    browser.call("wait", page="admin", selector=TODAY, text="Ben Santos", timeout=10000)
    assert not [f for f in browser.frames("admin", "received") if f["t"] > closed["t"]]
    # the sessions list polls every 600 s here, so it still shows the count from before
    assert "0/3" in browser.call("text", page="admin", selector=ben_row)

    restarted = browser.call("now")
    stack.pusherd = stack.start_pusherd()
    established = browser.wait_for_event(
        lambda e: (
            e["type"] == "ws"
            and e["page"] == "admin"
            and e["dir"] == "received"
            and e["t"] >= restarted
            and "pusher:connection_established" in e["data"]
        ),
        90,  # pusher-js retries on its own schedule
    )
    browser.call("wait", page="admin", selector=CONNECTED, timeout=15000)
    browser.call(
        "wait", page="admin", selector=ben_row, text="1/3", timeout=15000
    )
    # only the revalidation on reconnect fetched the sessions list
    fetched = browser.requests("admin", "/api/attendance-sessions?", since=stopped)
    assert fetched and all(r["t"] >= established["t"] for r in fetched), (fetched, established)
    assert browser.call("count", page="admin", selector="[role=alert]") == 0

    # a silent outage: the process stops (no close, no RST); the client's ping goes unanswered
    # and the page says so within activity + pong timeout, then recovers when it resumes
    paused = browser.call("now")
    stack.pusherd.process.send_signal(signal.SIGSTOP)
    try:
        browser.call(
            "wait",
            page="admin",
            selector='.connection:not([data-status="connected"])',
            timeout=15000,
        )
        noticed = browser.call("now")
    finally:
        stack.pusherd.process.send_signal(signal.SIGCONT)
    pings = [
        f
        for f in browser.frames("admin", "sent")
        if f.get("event") == "pusher:ping" and f["t"] >= paused
    ]
    assert pings and pings[0]["t"] < noticed, pings
    browser.call("wait", page="admin", selector=CONNECTED, timeout=60000)


def test_an_employee_page_never_subscribes_to_admin_channels_and_sign_out_stops_it(
    stack_factory: Any, browser: Browser
) -> None:
    stack = stack_factory()
    # the API refuses admin channels to an employee (this token is revoked by the sign-in below)
    refused = stack.call(
        "POST",
        "/broadcasting/auth",
        "ben",
        data={"socket_id": "123.456", "channel_name": "private-admin.dashboard"},
    )
    assert refused.status_code == 403
    ben = stack.ids["ben"]
    fast = "?poll_attendance=1"
    stack.sign_in("ben", "ben", query=fast)
    # (and the presence channel every signed-in page joins: who is online)
    mine = {"attendance", "sessions", f"private-user.{ben}", "presence-online"}
    for channel in mine:
        stack.subscribed("ben", channel)
    asked = {
        f["data"]["channel"]
        for f in browser.frames("ben", "sent")
        if f.get("event") == "pusher:subscribe"
    }
    assert asked == mine
    browser.call("wait", page="ben", selector="button", text="Check in")
    assert browser.call("count", page="ben", selector="[role=alert]") == 0
    assert not [e for e in browser.snapshot() if e["type"] == "pageerror" and e["page"] == "ben"]
    # it polls while signed in
    browser.wait_for_event(
        lambda e: len(browser.requests("ben", "/api/reports/employee-dashboard")) >= 3, 15
    )

    stack.sign_in("witness", "ana", query=fast)
    signed_out = browser.call("now")
    browser.call("click", page="ben", selector="button:has-text('Sign out')")
    browser.call("wait", page="ben", selector="h1", text="Sign in")
    # the unsubscribes go out, then the socket closes
    browser.wait_for_event(
        lambda e: e["type"] == "ws-close" and e["page"] == "ben" and e["t"] >= signed_out, 5
    )
    left = {
        f["data"]["channel"]
        for f in browser.frames("ben", "sent")
        if f.get("event") == "pusher:unsubscribe"
    }
    assert left == mine
    assert not [
        e
        for e in browser.snapshot()
        if e["type"] == "console" and e["page"] == "ben" and e["level"] == "error"
    ]
    # a page with the same poll interval polls three times meanwhile; the signed-out one never
    browser.wait_for_event(
        lambda e: (
            len(browser.requests("witness", "/api/reports/employee-dashboard", since=signed_out))
            >= 3
        ),
        15,
    )
    # (counted from the logout request: a poll already due when the button was clicked may
    # still go out before it; sign-out unmounts everything in the same task that sends it)
    requests = [e for e in browser.snapshot() if e["type"] == "request" and e["page"] == "ben"]
    logout = next(i for i, r in enumerate(requests) if "/api/auth/logout" in r["url"])
    assert [r["url"] for r in requests[logout + 1 :]] == []
    # a sign-out by the user says nothing; forced ones say why
    assert browser.call("count", page="ben", selector="[data-testid=signed-out-notice]") == 0

    # Ana signs in elsewhere: the witness page's next poll is refused and it says why
    stack.login("ana")
    browser.call("wait", page="witness", selector="h1", text="Sign in", timeout=10000)
    notice = "[data-testid=signed-out-notice]"
    browser.call("wait", page="witness", selector=notice, text="signed in somewhere else")

    # Cora's account is deactivated: her page ends at once, on the event (it polls every 30 s)
    stack.sign_in("cora", "cora")
    employees = stack.call("GET", "/api/employees?per_page=200", "admin").json()["data"]
    cora = next(u["id"] for u in employees if u["first_name"] == "Cora")
    stack.subscribed("cora", f"private-user.{cora}")
    deactivated = browser.call("now")
    toggled = stack.call("PATCH", f"/api/employees/{cora}/toggle-status", "admin")
    assert toggled.json()["status"] == "inactive", toggled.text
    browser.call(
        "wait",
        page="cora",
        selector=notice,
        text="Your account has been deactivated.",
        timeout=15000,
    )
    assert browser.wait_for_event(
        event_frame("cora", f"private-user.{cora}", "employee.updated", deactivated), 1
    )


def test_reports_follow_the_organisations_date_and_time_format_and_refuse_an_inverted_range(
    stack_factory: Any, browser: Browser
) -> None:
    stack = stack_factory()
    # the organisation writes times as 12 h; Ben checks in (all through the API, before the
    # admin signs in in the browser, which revokes the admin's API token)
    saved = stack.call("PUT", "/api/settings", "admin", json={"time_format": "12h"})
    assert saved.status_code == 200, saved.text
    session = stack.call("GET", "/api/reports/employee-dashboard", "ben").json()["active_session"]
    checked_in = stack.call("POST", f"/api/attendance-records/confirm/{session['id']}", "ben")
    assert checked_in.status_code == 200, checked_in.text
    org_date = stack.call("GET", "/api/reports/dashboard", "admin").json()["attendance_date"]
    # a browser whose calendar date is not the organisation's (one of these two always is not:
    # they are 25 hours apart)
    zone = next(
        z
        for z in ("Pacific/Kiritimati", "Pacific/Pago_Pago")
        if datetime.now(ZoneInfo(z)).date().isoformat() != org_date
    )
    stack.sign_in("admin", "admin", zone=zone)
    browser.call("wait", page="admin", selector=TODAY, text="Ben Santos")
    dashboard_in = browser.call("text", page="admin", selector=f"{TODAY} + td + td")
    assert re.fullmatch(r"\d{1,2}:\d{2} [AP]M", dashboard_in), dashboard_in

    browser.call("click", page="admin", selector="nav a:has-text('Reports')")
    browser.call("wait", page="admin", selector="h1", text="Reports")
    row = "table:has(caption:text('Daily report')) tbody tr:has-text('Ben Santos')"
    browser.call("wait", page="admin", selector=row)
    assert browser.call("value", page="admin", selector="#report-date") == org_date
    assert browser.call("value", page="admin", selector="#export-to") == org_date
    assert browser.call("value", page="admin", selector="#export-from") == org_date[:8] + "01"
    # the same time as on the dashboard, in the same format
    in_out = browser.call("text", page="admin", selector=f"{row} [data-testid=in-out]")
    assert in_out.startswith(dashboard_in + " – "), (in_out, dashboard_in)
    summary = browser.call("text", page="admin", selector="[aria-label=Summary]")
    assert "Total:" in summary and "total:" not in summary, summary
    cards = browser.call("boxes", page="admin", selector=".page > .card")
    assert len(cards) == 2 and cards[1]["top"] - cards[0]["bottom"] >= 8, cards
    browser.call("screenshot", page="admin", path=str(ARTIFACTS / "reports.png"))

    # an inverted range: the API refuses it and the page says why
    browser.call("fill", page="admin", selector="#export-from", value="2026-12-31")
    browser.call("fill", page="admin", selector="#export-to", value="2026-01-01")
    browser.call("click", page="admin", selector="button:has-text('Download CSV')")
    browser.call("wait", page="admin", selector="[role=alert]", text="end date must be on or after")

    stack.sign_in("phone", "admin", viewport=[375, 812], zone=zone)
    browser.call("click", page="phone", selector="nav a:has-text('Reports')")
    browser.call("wait", page="phone", selector=row)
    browser.call("screenshot", page="phone", path=str(ARTIFACTS / "reports-phone.png"))
    for box in browser.call("boxes", page="phone", selector=".table-wrap"):
        assert not box["overflows"], box
    assert not [e for e in browser.snapshot() if e["type"] == "pageerror"]


def presence_frames(stack: Stack, user_id: int) -> list[dict[str, Any]]:
    """The admin page's `employee.updated` frames about `user_id`'s presence, in order."""
    out = []
    for frame in stack.browser.frames("admin", "received"):
        if frame.get("event") != "employee.updated":
            continue
        if frame.get("channel") != "private-admin.employees":
            continue
        data = json.loads(frame["data"]) if isinstance(frame["data"], str) else frame["data"]
        if data.get("id") == user_id and data.get("action") == "presence":
            out.append({**data, "t": frame["t"]})
    return out


def test_the_admin_dashboard_shows_who_is_online_live(stack_factory: Any, browser: Browser) -> None:
    stack = stack_factory()
    stack.login("ana"), stack.login("ben")  # for their ids (the browser signs in anew)
    ana_id, ben_id = stack.ids["ana"], stack.ids["ben"]
    # the admin's page never polls within the test: what changes, changes over the WebSocket
    stack.sign_in("admin", "admin", query="?poll_attendance=600&poll_dashboard=600&poll_lists=600")
    stack.subscribed("admin", "presence-online")  # the admin's page joins too
    stack.subscribed("admin", "private-admin.employees")
    online = '[data-stat="online_now"] dd'
    ana_row = "[data-testid=employees] tr:has-text('Ana Reyes') [data-testid=presence]"
    ben_row = "[data-testid=employees] tr:has-text('Ben Santos') [data-testid=presence]"
    browser.call("wait", page="admin", selector=online, text="0")
    browser.call(
        "wait", page="admin", selector=f"{ana_row}[data-online=false]", text="Not seen yet"
    )

    # an employee signs in elsewhere: online on the admin's page within a few seconds
    stack.sign_in("ana", "ana")
    joined = stack.subscribed("ana", "presence-online")
    browser.call(
        "wait", page="admin", selector=f"{ana_row}[data-online=true]", text="Online", timeout=15000
    )
    browser.call("wait", page="admin", selector=online, text="1", timeout=15000)
    first = presence_frames(stack, ana_id)
    assert [f["online_now"] for f in first] == [True] and first[0]["t"] >= joined["t"], first
    # the number came in dashboard.updated itself: no request for the dashboard
    assert browser.requests("admin", "/api/reports/dashboard", since=joined["t"]) == []
    # the admin counts no one (online_now is employees): Ben joins, it says 2
    stack.sign_in("ben", "ben")
    browser.call("wait", page="admin", selector=online, text="2", timeout=15000)
    browser.call("wait", page="admin", selector=f"{ben_row}[data-online=true]", timeout=15000)
    browser.call("screenshot", page="admin", path=str(ARTIFACTS / "admin-dashboard-online.png"))
    # at phone width (the same page: a second admin sign-in would end this one)
    browser.call("resize", page="admin", viewport=[375, 812])
    browser.call(
        "screenshot", page="admin", path=str(ARTIFACTS / "admin-dashboard-online-phone.png")
    )
    for box in browser.call("boxes", page="admin", selector=".table-wrap"):
        assert not box["overflows"], box
    browser.call("resize", page="admin", viewport=[1280, 900])

    # a reload is not a sign-out: the page rejoins within the grace and nothing is sent
    reloaded = browser.call("now")
    browser.call("reload", page="ana")
    rejoined = stack.subscribed_since("ana", "presence-online", reloaded)
    # (the old socket closed after `reloaded`: the page was back within the grace, so this
    # checks flap suppression and not a slow reload)
    assert rejoined["t"] - reloaded < GRACE * 1000, (reloaded, rejoined)

    # Ana signs out and Ben closes his page: both offline once the grace has passed
    signed_out = browser.call("now")
    browser.call("click", page="ana", selector="button:has-text('Sign out')")
    browser.call("close", page="ben")
    browser.call("wait", page="admin", selector=online, text="0", timeout=int(GRACE * 1000) + 8000)
    for row in (ana_row, ben_row):
        browser.call("wait", page="admin", selector=f"{row}[data-online=false]", text="Last seen")
    offline_at = min(f["t"] for f in presence_frames(stack, ana_id) if not f["online_now"])
    assert offline_at - signed_out >= GRACE * 1000, (offline_at, signed_out)
    # per channel, pusherd sends in order: had the reload (earlier) produced a removal, it
    # would have reached the admin before this one. Ana went offline exactly once.
    assert [f["online_now"] for f in presence_frames(stack, ana_id)] == [True, False]
    assert [f["online_now"] for f in presence_frames(stack, ben_id)] == [True, False]
    # the last-seen time reads like every other time on the page (organisation, 24 h)
    seen = browser.call("text", page="admin", selector=f"{ana_row} time")
    assert re.fullmatch(r"\d{2}:\d{2}", seen), seen
    browser.call("screenshot", page="admin", path=str(ARTIFACTS / "admin-dashboard-offline.png"))
    # the longer "Last seen …" still fits the employees table: no clipped button
    for box in browser.call("boxes", page="admin", selector=".table-wrap"):
        assert not box["overflows"], box
    assert not [e for e in browser.snapshot() if e["type"] == "pageerror"]
