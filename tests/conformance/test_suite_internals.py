"""The suite's own building blocks, checked against the spec's test vectors (§18) and by
running it: a signer that is wrong would make every HTTP case meaningless."""

from __future__ import annotations

import json
import subprocess
import sys

from protocol_tests.wire import md5_hex, sign, string_to_sign
from tests.support.pusherd_process import REPO_ROOT

KEY, SECRET = "278d425bdf160c739803", "7ad3773142a6692b25b8"


def test_the_signer_reproduces_the_documented_post_events_example() -> None:
    body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    assert md5_hex(body) == "ec365a775a4cd0599faeb73354201b6f"
    params = {"auth_key": KEY, "auth_timestamp": "1353088179", "auth_version": "1.0",
              "body_md5": md5_hex(body), "auth_signature": "ignored"}
    assert sign(SECRET, string_to_sign("post", "/apps/3/events", params)) == \
        "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"


def test_the_signer_reproduces_the_get_vectors_node_and_python_style() -> None:
    params = {"auth_key": KEY, "auth_timestamp": "1353088179", "auth_version": "1.0",
              "info": "user_count", "filter_by_prefix": "presence-"}
    assert sign(SECRET, string_to_sign("GET", "/apps/3/channels", params)) == \
        "16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"
    params["body_md5"] = "d41d8cd98f00b204e9800998ecf8427e"
    assert sign(SECRET, string_to_sign("GET", "/apps/3/channels", params)) == \
        "f3f17c61ae491cc9085db68b22076e9b772e3bcb301659d655153ee3f9782aba"


def test_channel_and_signin_signatures_match_the_vectors() -> None:
    assert sign(SECRET, "1234.1234:private-foobar") == \
        "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    assert sign(SECRET, '1234.1234::user::{"id":"12345"}') == \
        "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"


def test_every_case_names_a_spec_section_and_the_list_is_printed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "protocol_tests", "--host", "h", "--port", "1", "--app-id", "1",
         "--app-key", "k", "--app-secret", "s", "--list"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) > 100
    for line in out:
        case_id, section, title = line.split("  ", 2)
        assert section.startswith("§") and section[1].isdigit(), line
        assert title.strip(), line
    assert len({line.split("  ", 1)[0] for line in out}) == len(out)


def test_an_unreachable_server_fails_every_case_and_exits_non_zero(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "protocol_tests", "--host", "127.0.0.1", "--port", "9",
         "--app-id", "1", "--app-key", "k", "--app-secret", "s", "--no-browser",
         "--only", "handshake.*", "--only", "http.trigger.empty-data",
         "--report", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 1
    failed = [line for line in lines if line.startswith("FAIL  ")]
    not_applicable = [line for line in lines if line.startswith("N/A  ")]
    assert len(failed) >= 7
    assert lines[-2:] == [f"{len(not_applicable)} not applicable",
                          f"0 passed, {len(failed)} failed"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert {c["result"] for c in report["cases"]} == {"FAIL", "N/A"}
    assert all(c["reason"] for c in report["cases"])
    assert "| `handshake.first-frame` | 1.3 | FAIL |" in (tmp_path / "report.md").read_text()


async def test_the_webhook_receiver_keeps_raw_headers_and_body_and_finds_events() -> None:
    import asyncio
    import socket

    from protocol_tests.webhooks import WebhookReceiver

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    receiver = WebhookReceiver(port)
    await receiver.start()
    try:
        body = b'{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"c"}]}'
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /hooks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-Pusher-Key: k\r\nX-Pusher-Signature: "
                     + sign("s", body.decode()).encode()
                     + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()
        delivery, event = await receiver.wait_event(
            lambda e: e.get("name") == "channel_occupied", "channel_occupied", timeout=5)
        assert event == {"name": "channel_occupied", "channel": "c"}
        assert delivery.body == body
        assert ("X-Pusher-Key", "k") in delivery.headers
        assert delivery.header("x-pusher-signature") == sign("s", body.decode())
    finally:
        await receiver.stop()
