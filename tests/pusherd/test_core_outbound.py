"""pusherd.core.outbound: one encoding per event, framed per RFC 6455 §5.2.

Each frame is checked by parsing it with websockets' own Sans-I/O client (a real RFC 6455
parser), not by re-deriving the expected bytes.
"""

from __future__ import annotations

import pytest
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

from pusherd.core.outbound import Outbound, websocket_text_frame


def _parse(wire: bytes) -> list[tuple[Opcode, bool, bytes]]:
    client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    client.receive_data(wire)
    return [(f.opcode, f.fin, bytes(f.data)) for f in client.events_received()]


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_payload_of_any_length_becomes_one_unmasked_final_text_frame(length: int) -> None:
    payload = b"x" * length
    assert _parse(websocket_text_frame(payload)) == [(Opcode.TEXT, True, payload)]


def test_the_length_encoding_switches_at_126_and_65536_bytes() -> None:
    assert websocket_text_frame(b"a" * 125)[:2] == b"\x81\x7d"
    assert websocket_text_frame(b"a" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert websocket_text_frame(b"a" * 65536)[:2] == b"\x81\x7f"


def test_an_outbound_frame_is_encoded_once_and_reused() -> None:
    frame = Outbound(b'{"event":"e","channel":"c","data":"d"}')
    first = frame.websocket
    assert frame.websocket is first
    assert _parse(first) == [(Opcode.TEXT, True, frame.payload)]


def test_several_frames_back_to_back_parse_in_order() -> None:
    wire = b"".join(websocket_text_frame(p) for p in (b"one", b"two" * 100, b"three"))
    assert [data for _, _, data in _parse(wire)] == [b"one", b"two" * 100, b"three"]
