"""attendance_api serves the built web frontend on its own origin (the pages of the router and
the hashed assets), says how to build it when it is not built, leaves every API answer as it
was, and gives the browser its Echo options."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from attendance_api.app import create_app
from attendance_api.runtime import PusherConfig

from .conftest import Clock, build_runtime, manila


def client_for(tmp_path: Path, dist: Path, pusher: PusherConfig | None = None) -> TestClient:
    runtime = build_runtime(f"sqlite:///{tmp_path / 'a.db'}", Clock(manila(2026, 3, 2, 9)), pusher)
    return TestClient(create_app(runtime, background=False, frontend=dist))


@pytest.mark.parametrize("path", ["/", "/employee", "/admin", "/reports"])
def test_every_page_path_is_the_built_index(tmp_path: Path, path: str) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<!doctype html><div id="root"></div>')
    (dist / "assets" / "index-abc.js").write_text("console.log(1)")
    with client_for(tmp_path, dist) as client:
        page = client.get(path)
        assert page.status_code == 200 and '<div id="root">' in page.text
        assert page.headers["cache-control"] == "no-cache"
        asset = client.get("/assets/index-abc.js")
        assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]


def test_without_a_build_the_page_says_how_to_build_and_the_api_is_unchanged(
    tmp_path: Path,
) -> None:
    with client_for(tmp_path, tmp_path / "missing") as client:
        page = client.get("/")
        assert page.status_code == 503 and "scripts/run.sh" in page.text
        assert "npm ci" in page.text
        assert client.get("/api/health").json()["status"] == "healthy"
        missing = client.get("/api/nothing-here")
        assert (missing.status_code, missing.json()) == (404, {"message": "Not Found."})
        assert client.post("/api/settings/restore").status_code == 404  # removed routes stay 404
        assert client.delete("/api/health").status_code == 405
        assert client.get("/employee/1").status_code == 404
        assert client.get("/assets/nothing.js").status_code == 404


def test_the_realtime_config_gives_echo_options_and_never_the_secret(tmp_path: Path) -> None:
    pusher = PusherConfig(app_id="1001", key="k-1", secret="s3cret", host="10.0.0.5", port=6001)
    with client_for(tmp_path, tmp_path, pusher) as client:
        config = client.get("/api/realtime/config").json()
    assert config == {
        "enabled": True,
        "broadcaster": "reverb",
        "key": "k-1",
        "wsHost": "10.0.0.5",
        "wsPort": 6001,
        "scheme": "http",
        "authEndpoint": "/broadcasting/auth",
    }
    with client_for(tmp_path, tmp_path) as client:
        off = client.get("/api/realtime/config").json()
    assert off["enabled"] is False and "key" not in off
