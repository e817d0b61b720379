"""The live-server fuzzer: generated input over real sockets against a running pusherd.

Four kinds of worker run side by side on one event loop:

* frame workers keep WebSocket connections open and send generated client messages
  (:func:`~tests.fuzz.generators.client_frame`); after each one they subscribe to and
  unsubscribe from a fresh *sentinel* channel, and every frame the server sent before the
  sentinel's ``subscription_succeeded`` is that message's answer;
* framing workers open a connection per case and send malformed WebSocket framing
  (:func:`~tests.fuzz.generators.framing_case`), then half-close and read to the end;
* HTTP workers open a connection per case and send one or several (pipelined, split,
  chunked, malformed) API requests or WebSocket handshakes, then half-close and read
  every response;
* beside them an *observer* socket stays subscribed to a channel that receives a signed
  trigger every ``trigger_interval`` seconds; it must receive every one, in order.

Every answer is checked by :mod:`tests.fuzz.oracle`; every wrong answer becomes a
:class:`Problem` that keeps the input that caused it. :func:`run_fuzz` starts a real
pusherd process (tests/support) and also checks that it stays up and that its log shows
no unhandled exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.fuzz import generators as gen
from tests.fuzz import oracle, wire
from tests.support.pusherd_process import run_pusherd

WS_PATH = f"/app/{gen.APP_KEY}?protocol=7&client=js&version=8.6.0&flash=false"
OBSERVED_CHANNEL = "fuzz-observer"
# Log lines that mean an exception escaped a handler (asyncio/uvloop print these).
_LOG_ALARMS = ("Traceback", " ERROR ", " CRITICAL ", "Fatal error", "Exception in callback",
               "exception was never retrieved", "Unhandled")


@dataclass
class Options:
    seed: int = 1
    frames: int = 2_000  # client messages on open connections
    framing: int | None = None  # malformed-framing connections (default frames // 20)
    http: int = 500  # HTTP requests (including handshakes)
    frame_workers: int = 6
    framing_workers: int = 2
    http_workers: int = 3
    fallback: int = 600  # requests to the HTTP fallback transports (§15)
    fallback_workers: int = 2
    reconnect_every: int = 1_500  # a frame worker starts a new connection this often
    trigger_interval: float = 0.05


@dataclass
class Problem:
    where: str
    detail: str
    input: bytes

    def __str__(self) -> str:
        return f"[{self.where}] {self.detail}\n    input: {self.input[:600]!r}"


@dataclass
class Report:
    frames: int = 0
    framing: int = 0
    http_requests: int = 0
    http_connections: int = 0
    fallback_requests: int = 0
    fallback_sessions: int = 0
    fallback_statuses: Counter[int] = field(default_factory=Counter)
    triggers_sent: int = 0
    triggers_received: int = 0
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    close_codes: Counter[int | None] = field(default_factory=Counter)
    error_codes: Counter[int | None] = field(default_factory=Counter)
    log_alarms: list[str] = field(default_factory=list)
    server_alive: bool = True

    @property
    def ok(self) -> bool:
        return not self.problem_count and not self.log_alarms and self.server_alive

    def add(self, where: str, detail: str, data: bytes) -> None:
        self.problem_count += 1
        if len(self.problems) < 200:
            self.problems.append(Problem(where, detail, data))

    def summary(self) -> str:
        lines = [
            f"client frames {self.frames}, malformed-framing connections {self.framing}, "
            f"HTTP requests {self.http_requests} on {self.http_connections} connections, "
            f"in {self.seconds:.1f} s",
            f"fallback requests {self.fallback_requests} on {self.fallback_sessions} "
            f"sessions, statuses {dict(sorted(self.fallback_statuses.items()))}",
            f"observer: {self.triggers_received} of {self.triggers_sent} triggers received",
            f"HTTP statuses: {dict(sorted(self.statuses.items()))}",
            f"close codes: {dict(sorted(self.close_codes.items(), key=str))}",
            f"pusher:error codes: {dict(sorted(self.error_codes.items(), key=str))}",
            f"server alive at the end: {self.server_alive}; log alarms: {len(self.log_alarms)}",
            f"problems: {self.problem_count}",
        ]
        lines += [str(p) for p in self.problems[:40]]
        lines += ["log: " + record.rstrip() for record in self.log_alarms[:5]]
        return "\n".join(lines)


def _signed_trigger(channel: str, name: str, data: str) -> bytes:
    body = json.dumps({"name": name, "channel": channel, "data": data}).encode()
    query, _ = gen.signed_query(UNBENT_RANDOM, "POST", f"/apps/{gen.APP_ID}/events", body, [])
    return (f"POST /apps/{gen.APP_ID}/events?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


class _UnbentRandom(random.Random):
    """A Random whose draws never pick a bent signature (the trigger loop signs right)."""

    def random(self) -> float:
        return 0.99


UNBENT_RANDOM = _UnbentRandom()


class Campaign:
    def __init__(self, port: int, options: Options) -> None:
        self.port = port
        self.options = options
        self.report = Report()
        self._frames_left = options.frames
        self._framing_left = options.framing if options.framing is not None \
            else options.frames // 20
        self._http_left = options.http
        self._fallback_left = options.fallback
        self._received: list[int] = []
        self._observer_done = asyncio.Event()

    # --- the whole run ------------------------------------------------------------------

    async def run(self) -> Report:
        started = time.monotonic()
        observer = await self._open_ws()
        ws, _ = observer
        ws.send(wire.text(json.dumps({"event": "pusher:subscribe", "data": {
            "channel": OBSERVED_CHANNEL, "auth": ""}}).encode()))
        stop_triggers = asyncio.Event()
        observer_task = asyncio.create_task(self._observe(ws))
        trigger_task = asyncio.create_task(self._trigger_loop(stop_triggers))
        opts = self.options
        workers = [self._frame_worker(i) for i in range(opts.frame_workers)]
        workers += [self._framing_worker(i) for i in range(opts.framing_workers)]
        workers += [self._http_worker(i) for i in range(opts.http_workers)]
        workers += [self._fallback_worker(i) for i in range(opts.fallback_workers)]
        await asyncio.gather(*workers)
        stop_triggers.set()
        await trigger_task
        with contextlib.suppress(TimeoutError):  # a missing trigger is reported below
            await asyncio.wait_for(self._observer_done.wait(), 10)
        observer_task.cancel()
        ws.abort()
        self._check_observer()
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _open_ws(self) -> tuple[wire.WebSocketStream, str]:
        ws = await wire.WebSocketStream.open(self.port, WS_PATH)
        frame = await ws.next_frame()
        assert frame is not None and frame.opcode == wire.OP_TEXT, frame
        established = json.loads(frame.payload)
        assert established["event"] == "pusher:connection_established", established
        return ws, json.loads(established["data"])["socket_id"]

    # --- observer and trigger loop -------------------------------------------------------

    async def _trigger_loop(self, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        sequence = 0
        try:
            while True:
                final = stop.is_set()
                writer.write(_signed_trigger(OBSERVED_CHANNEL, "tick", json.dumps(
                    {"seq": sequence, "final": final})))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wire.TIMEOUT)
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await asyncio.wait_for(reader.readexactly(length), wire.TIMEOUT)
                if not head.startswith(b"HTTP/1.1 200 "):
                    self.report.add("observer", f"trigger answered {head[:40]!r} {body!r}", b"")
                sequence += 1
                self.report.triggers_sent = sequence
                if final:
                    return
                with contextlib.suppress(TimeoutError):  # the interval passed: next trigger
                    await asyncio.wait_for(stop.wait(), self.options.trigger_interval)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.report.add("observer", f"trigger connection failed: {exc!r}", b"")
        finally:
            writer.close()

    async def _observe(self, ws: wire.WebSocketStream) -> None:
        try:
            while True:
                frame = await ws.next_frame(timeout=60)
                if frame is None or frame.opcode == wire.OP_CLOSE:
                    self.report.add("observer", f"observer connection closed: {frame}", b"")
                    self._observer_done.set()
                    return
                message = json.loads(frame.payload)
                event = message.get("event")
                if event == "pusher:ping":  # the keepalive (§5.2): answer it
                    ws.send(wire.text(b'{"event":"pusher:pong","data":{}}'))
                elif event == "tick":
                    data = json.loads(message["data"])
                    self._received.append(data["seq"])
                    if data["final"]:
                        self._observer_done.set()
                elif event not in ("pusher_internal:subscription_succeeded",
                                   "pusher_internal:subscription_count"):
                    self.report.add("observer", f"unexpected frame {frame.payload[:200]!r}", b"")
        except (OSError, TimeoutError, wire.FrameDecodeError) as exc:
            self.report.add("observer", f"observer failed: {exc!r}", b"")
            self._observer_done.set()

    def _check_observer(self) -> None:
        report = self.report
        report.triggers_received = len(self._received)
        if self._received != list(range(report.triggers_sent)):
            missing = sorted(set(range(report.triggers_sent)) - set(self._received))
            report.add("observer", f"observer received {len(self._received)} of "
                       f"{report.triggers_sent} triggers; missing {missing[:20]}, "
                       f"in order: {self._received == sorted(self._received)}", b"")

    # --- client frames ------------------------------------------------------------------

    async def _frame_worker(self, index: int) -> None:
        rng = random.Random(f"{self.options.seed}:frames:{index}")
        ws: wire.WebSocketStream | None = None
        socket_id = ""
        on_connection = 0
        while self._frames_left > 0:
            self._frames_left -= 1
            number = self.report.frames
            self.report.frames += 1
            if ws is None or on_connection >= self.options.reconnect_every:
                if ws is not None:
                    self._leave(rng, ws)
                ws, socket_id = await self._open_ws()
                on_connection = 0
            on_connection += 1
            case = gen.client_frame(rng, socket_id)
            if await self._frame_case(ws, case, f"fuzz-sentinel-{index}-{number}", rng):
                ws = None
        if ws is not None:
            self._leave(rng, ws)

    def _leave(self, rng: random.Random, ws: wire.WebSocketStream) -> None:
        if rng.random() < 0.5:
            ws.send(wire.encode_frame(wire.OP_CLOSE, b"\x03\xe8"))
            ws.writer.close()
        else:
            ws.abort()

    async def _frame_case(self, ws: wire.WebSocketStream, case: gen.FrameCase,
                          sentinel: str, rng: random.Random) -> bool:
        """Send one case and check its answers; True if the connection ended."""
        where = f"frame {case.kind}"
        opcode = wire.OP_BINARY if case.binary else wire.OP_TEXT
        data = wire.encode_frame(opcode, case.payload) + wire.text(json.dumps(
            {"event": "pusher:subscribe", "data": {"channel": sentinel}}).encode()) \
            + wire.text(json.dumps(
                {"event": "pusher:unsubscribe", "data": {"channel": sentinel}}).encode())
        answers: list[dict[str, Any]] = []
        close: int | None = -1
        try:
            # Now and then the frames cross several writes, cut anywhere (mid-header too).
            cuts = sorted(rng.sample(range(1, len(data)), 2)) if rng.random() < 0.1 else []
            for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
                ws.send(data[start:end])
                if end != len(data):
                    await ws.writer.drain()
            while True:
                frame = await ws.next_frame()
                if frame is None:
                    self.report.add(where, "connection ended without a close frame",
                                    case.payload)
                    return True
                if frame.opcode == wire.OP_CLOSE:
                    close = wire.close_code(frame.payload)
                    break
                if frame.opcode != wire.OP_TEXT:
                    self.report.add(where, f"non-text frame {frame}", case.payload)
                    continue
                for problem in oracle.check_server_frame(frame.payload):
                    self.report.add(where, problem, case.payload)
                message = json.loads(frame.payload)
                if message.get("event") == "pusher_internal:subscription_succeeded" \
                        and message.get("channel") == sentinel:
                    break
                answers.append(message)
        except (TimeoutError, OSError, wire.FrameDecodeError) as exc:
            self.report.add(where, f"no complete answer: {exc!r}", case.payload)
            ws.abort()
            return True
        for message in answers:
            if message.get("event") == "pusher:error":
                self.report.error_codes[message["data"].get("code")] += 1
        if close != -1:
            self.report.close_codes[close] += 1
            for problem in oracle.check_close_code(close):
                self.report.add(where, problem, case.payload)
            # 4009 may end any signed-in socket: the HTTP fuzzer terminates users.
            if case.expect_close is None and close != 4009:
                self.report.add(where, f"unexpected close {close}", case.payload)
            elif case.expect_close is not None and close != case.expect_close and close != 4009:
                self.report.add(where, f"closed {close}, expected {case.expect_close}",
                                case.payload)
            ws.abort()
            return True
        if case.expect_close is not None:
            self.report.add(where, f"not closed, expected {case.expect_close}", case.payload)
        if case.expect_error and not any(m.get("event") == "pusher:error" for m in answers):
            self.report.add(where, f"no pusher:error among {answers!r:.300}", case.payload)
        if case.expect_event is not None:
            event, channel = case.expect_event
            if not any(m.get("event") == event and (not channel or m.get("channel") == channel)
                       for m in answers):
                self.report.add(where, f"no {event} {channel} among {answers!r:.300}",
                                case.payload)
        return False

    # --- malformed framing --------------------------------------------------------------

    async def _framing_worker(self, index: int) -> None:
        rng = random.Random(f"{self.options.seed}:framing:{index}")
        while self._framing_left > 0:
            self._framing_left -= 1
            self.report.framing += 1
            await self._framing_case(gen.framing_case(rng))

    async def _framing_case(self, case: gen.FramingCase) -> None:
        where = f"framing {case.kind}"
        data = b"".join(case.chunks)
        try:
            ws, _ = await self._open_ws()
        except (OSError, TimeoutError, AssertionError) as exc:
            self.report.add(where, f"handshake failed: {exc!r}", b"")
            return
        for chunk in case.chunks:
            if chunk:
                ws.send(chunk)
        close: int | None = -1
        pongs: list[bytes] = []
        try:
            ws.send(wire.text(gen.PING_TEXT))
            if ws.writer.can_write_eof():
                ws.writer.write_eof()
            while True:
                frame = await ws.next_frame()
                if frame is None:
                    break
                if close != -1:
                    self.report.add(where, f"frame after the close frame: {frame}", data)
                if frame.opcode == wire.OP_CLOSE:
                    close = wire.close_code(frame.payload)
                    try:
                        frame.payload[2:].decode()
                    except UnicodeDecodeError:
                        self.report.add(where, "close reason is not UTF-8", data)
                elif frame.opcode == wire.OP_PONG:
                    pongs.append(frame.payload)
                elif frame.opcode == wire.OP_TEXT:
                    for problem in oracle.check_server_frame(frame.payload):
                        self.report.add(where, problem, data)
                else:
                    self.report.add(where, f"unexpected frame {frame}", data)
        except (TimeoutError, wire.FrameDecodeError) as exc:
            self.report.add(where, f"no complete answer: {exc!r}", data)
        except OSError:  # reset: the server closed while this side was still writing
            if case.must_close and close == -1:
                self.report.add(where, "connection reset before a close frame", data)
        finally:
            ws.abort()
        if close != -1:
            self.report.close_codes[close] += 1
            # The answer to a client's valid close frame echoes its code (RFC 6455 §5.5.1).
            echoed = case.kind.startswith("close ") and close in case.expect_close
            for problem in [] if echoed else oracle.check_close_code(close):
                self.report.add(where, problem, data)
            if case.expect_close and close not in case.expect_close:
                self.report.add(where, f"closed {close}, expected one of "
                                f"{sorted(case.expect_close)[:6]}", data)
        elif case.must_close:
            self.report.add(where, "no close frame", data)
        if case.echo is not None and case.echo not in pongs:
            self.report.add(where, f"ping {case.echo!r} not answered with its pong", data)

    # --- HTTP ---------------------------------------------------------------------------

    async def _http_worker(self, index: int) -> None:
        rng = random.Random(f"{self.options.seed}:http:{index}")
        while self._http_left > 0:
            case = gen.http_case(rng)
            self._http_left -= len(case.requests)
            self.report.http_requests += len(case.requests)
            self.report.http_connections += 1
            await self._http_case(case)

    async def _http_case(self, case: gen.HttpCase) -> None:
        data = b"".join(r.data for r in case.requests)
        where = f"http {case.kind}"
        bounds = [0, *case.split, len(data)]
        chunks = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        try:
            received = await wire.exchange(self.port, chunks)
        except (TimeoutError, OSError) as exc:
            self.report.add(where, f"no complete answer: {exc!r}", data)
            return
        if case.kind == "upgrade":
            self._check_upgrade(received, case.requests[0])
            return
        try:
            answers = wire.decode_responses(received, [r.method == "HEAD" for r in case.requests])
        except wire.HttpDecodeError as exc:
            self.report.add(where, str(exc), data)
            return
        if len(answers) > len(case.requests):
            self.report.add(where, f"{len(answers)} answers to {len(case.requests)} requests",
                            data)
        for request, answer in zip(case.requests, answers, strict=False):
            self.report.statuses[answer.status] += 1
            for problem in oracle.check_http_answer(
                    answer.status, answer.headers.get("content-type", ""), answer.body,
                    head=request.method == "HEAD"):
                self.report.add(where, problem, request.data)
            if request.expect_status is not None and answer.status not in request.expect_status:
                self.report.add(where, f"HTTP {answer.status} {answer.body[:200]!r}, expected "
                                f"{sorted(request.expect_status)}", request.data)
        if len(answers) < len(case.requests):
            closed_by_server = answers and answers[-1].headers.get("connection") == "close"
            owed = [r for r in case.requests[len(answers):] if r.complete and not r.closes]
            if owed and not closed_by_server:
                self.report.add(where, f"{len(answers)} answers to {len(case.requests)} "
                                "requests", data)

    def _check_upgrade(self, received: bytes, request: gen.HttpRequest) -> None:
        where, data = "http upgrade", request.data
        if request.expect_upgrade and not received.startswith(b"HTTP/1.1 101 "):
            self.report.add(where, f"valid handshake answered {received[:200]!r}", data)
            return
        if not received.startswith(b"HTTP/1.1 101 "):
            try:
                answers = wire.decode_responses(received, [False])
            except wire.HttpDecodeError as exc:
                self.report.add(where, str(exc), data)
                return
            if len(answers) != 1:
                self.report.add(where, f"{len(answers)} answers to a handshake", data)
                return
            answer = answers[0]
            self.report.statuses[answer.status] += 1
            for problem in oracle.check_http_answer(answer.status,
                                                    answer.headers.get("content-type", ""),
                                                    answer.body):
                self.report.add(where, problem, data)
            return
        self.report.statuses[101] += 1
        buffer = bytearray(received.partition(b"\r\n\r\n")[2])
        try:
            frames = wire.decode_frames(buffer)
        except wire.FrameDecodeError as exc:
            self.report.add(where, str(exc), data)
            return
        if buffer:
            self.report.add(where, f"trailing bytes after the frames: {bytes(buffer[:80])!r}", data)
        texts = [json.loads(f.payload) for f in frames if f.opcode == wire.OP_TEXT]
        closes = [wire.close_code(f.payload) for f in frames if f.opcode == wire.OP_CLOSE]
        if not texts:
            self.report.add(where, "no first frame after 101", data)
            return
        first = texts[0]
        for text in texts:
            for problem in oracle.check_server_frame(json.dumps(text).encode()):
                self.report.add(where, problem, data)
        if request.trailing_ping and [t.get("event") for t in texts[1:2]] != ["pusher:pong"]:
            self.report.add(where, f"the ping sent with the handshake got {texts!r:.300}", data)
        if first.get("event") == "pusher:connection_established":
            return
        if request.expect_upgrade:
            self.report.add(where, f"valid handshake refused: {first!r:.300}", data)
        # §1.4: a refusal is a pusher:error with a code, then a close with the same code.
        code = first.get("data", {}).get("code") if first.get("event") == "pusher:error" \
            else None
        self.report.error_codes[code] += 1
        for problem in oracle.check_server_frame(json.dumps(first).encode()):
            self.report.add(where, problem, data)
        if code is None or closes[:1] != [code]:
            self.report.add(where, f"refusal {first!r:.200} then close {closes}", data)
        for close in closes:
            self.report.close_codes[close] += 1

    # --- HTTP fallback transports (§15) ------------------------------------------------

    async def _fallback_worker(self, index: int) -> None:
        """Requests to the fallback transports, on a session of its own: after each send the
        session accepted (and at least every 20 requests, so it never expires) a sentinel
        subscribe/unsubscribe goes out, and polls are read until the sentinel's
        ``subscription_succeeded``: everything before it answers the requests before it."""
        rng = random.Random(f"{self.options.seed}:fallback:{index}")
        session: str | None = None
        socket_id = ""
        since_poll = 0
        while self._fallback_left > 0:
            if session is not None and rng.random() < 0.01:
                session = None  # leave it to expire (§15.3); the next cases use a new one
            if session is None:
                session = gen.session_path(rng)
                socket_id = await self._fallback_open(session)
                if not socket_id:
                    return
            case = gen.fallback_case(rng, socket_id)
            self._fallback_left -= 1
            number = self.report.fallback_requests
            self.report.fallback_requests += 1
            data = gen.fallback_request(case.method, case.target.replace("{session}", session),
                                        case.body, case.origin, case.extra)
            where = f"fallback {case.kind}"
            answer = await self._fallback_exchange(where, data, head=case.method == "HEAD",
                                                   may_close=case.closes)
            if answer is None:
                continue
            if case.expect_status is not None and answer.status not in case.expect_status:
                self.report.add(where, f"HTTP {answer.status} {answer.body[:200]!r}, expected "
                                f"{sorted(case.expect_status)}", data)
            accepted = case.frames is not None and answer.status == 204
            since_poll += 1
            if accepted or since_poll >= 20:
                since_poll = 0
                # §3.1: a frame that is not a JSON object with an event is answered in-band.
                must_error = accepted and any(not _is_event(f) for f in case.frames or [])
                if await self._fallback_sentinel(session, f"fuzz-fb-{index}-{number}", data,
                                                 must_error):
                    session = None

    async def _fallback_exchange(self, where: str, data: bytes, *, head: bool = False,
                                 may_close: bool = False, timeout: float = wire.TIMEOUT
                                 ) -> wire.HttpAnswer | None:
        """One request on a fresh connection; its answer checked by the oracle (None when
        there was none: that is a problem unless the request was too large to be read)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22), wire.TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self.report.add(where, f"connect failed: {exc!r}", data)
            return None
        try:
            writer.write(data)
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                await writer.drain()  # a refused huge body may be cut off mid-write
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            length_text = raw.lower().partition(b"content-length:")[2].split(b"\r\n")[0]
            if not head and length_text.strip().isdigit():
                raw += await asyncio.wait_for(reader.readexactly(int(length_text)), timeout)
            answers = wire.decode_responses(raw, [head])
        except (OSError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            if not may_close:
                self.report.add(where, f"no complete answer: {exc!r}", data)
            return None
        except wire.HttpDecodeError as exc:
            self.report.add(where, str(exc), data)
            return None
        finally:
            writer.transport.abort()
        answer = answers[0]
        self.report.fallback_statuses[answer.status] += 1
        for problem in oracle.check_fallback_answer(answer.status, answer.headers, answer.body,
                                                    head=head):
            self.report.add(where, problem, data)
        return answer

    async def _fallback_receive(self, where: str, session: str, data: bytes
                                ) -> tuple[list[dict[str, Any]], list[int | None]] | None:
        """One poll of `session`: its frames and close codes (None: no usable answer)."""
        poll = gen.fallback_request("POST", gen.fallback_url(session, "xhr"))
        # A held poll is answered within the heartbeat interval (2 s in SERVER_TOML).
        answer = await self._fallback_exchange(where + " poll", poll, timeout=10)
        if answer is None:
            return None
        if answer.status != 200:
            self.report.add(where, f"poll answered {answer.status} {answer.body[:200]!r}", data)
            return None
        problems, frames, closes = oracle.parse_receive_body(answer.body)
        for problem in problems:
            self.report.add(where, problem, data)
        messages = []
        for frame in frames:
            with contextlib.suppress(ValueError):
                message = json.loads(frame)
                if isinstance(message, dict):
                    messages.append(message)
                    if message.get("event") == "pusher:error" \
                            and isinstance(message.get("data"), dict):
                        self.report.error_codes[message["data"].get("code")] += 1
        for code in closes:
            self.report.close_codes[code] += 1
        return messages, closes

    async def _fallback_open(self, session: str) -> str:
        """Open `session` with a first poll: ``o`` then connection_established (§15.2)."""
        where = "fallback open"
        self.report.fallback_sessions += 1
        poll = gen.fallback_request("POST", gen.fallback_url(session, "xhr"))
        answer = await self._fallback_exchange(where, poll, timeout=10)
        if answer is None or answer.status != 200 or not answer.body.startswith(b"o"):
            self.report.add(where, f"session not opened: {answer!r:.300}", poll)
            return ""
        received = self._fallback_receive_body(where, answer.body, poll)
        first = received[0] if received else {}
        if first.get("event") != "pusher:connection_established":
            self.report.add(where, f"first frame {first!r:.300}", poll)
            return ""
        return str(json.loads(first["data"])["socket_id"])

    def _fallback_receive_body(self, where: str, body: bytes, data: bytes
                                     ) -> list[dict[str, Any]]:
        problems, frames, _ = oracle.parse_receive_body(body)
        for problem in problems:
            self.report.add(where, problem, data)
        return [json.loads(f) for f in frames]

    async def _fallback_sentinel(self, session: str, sentinel: str, data: bytes,
                                 must_error: bool = False) -> bool:
        """Send the sentinel's subscribe/unsubscribe and poll until its
        ``subscription_succeeded`` (or the session's close line); True if the session
        ended. `data` is the request whose answers these polls carry."""
        where = "fallback answers"
        body = json.dumps([json.dumps({"event": "pusher:subscribe", "data": {
            "channel": sentinel}}), json.dumps({"event": "pusher:unsubscribe", "data": {
                "channel": sentinel}})]).encode()
        send = gen.fallback_request("POST", gen.fallback_url(session, "xhr_send"), body)
        answer = await self._fallback_exchange(where + " send", send)
        if answer is None or answer.status != 204:
            # The session is only forgotten once its close line was read: a 404 here means
            # it vanished without one.
            self.report.add(where, f"sentinel send answered {answer!r:.300}", data)
            return True
        answers: list[dict[str, Any]] = []
        for _ in range(20):  # frames of other workers (broadcasts) may come first
            received = await self._fallback_receive(where, session, data)
            if received is None:
                return True
            messages, closes = received
            answers += messages
            if closes:
                return True
            if any(m.get("event") == "pusher_internal:subscription_succeeded"
                   and m.get("channel") == sentinel for m in messages):
                if must_error and not any(m.get("event") == "pusher:error" for m in answers):
                    self.report.add(where, f"no pusher:error among {answers!r:.300}", data)
                return False
        self.report.add(where, f"no subscription_succeeded for {sentinel} in 20 polls", data)
        return True


def _is_event(frame: str) -> bool:
    try:
        value = json.loads(frame)
    except ValueError:
        return False
    return isinstance(value, dict) and isinstance(value.get("event"), str) \
        and bool(value["event"])


async def _up(port: int) -> bool:
    try:
        received = await wire.exchange(port, [b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n"])
    except (OSError, TimeoutError):
        return False
    return received.startswith(b"HTTP/1.1 200 ")


def find_log_alarms(lines: list[str]) -> list[str]:
    """Each log record that shows an escaped exception, with its traceback lines."""
    alarms: list[str] = []
    in_record = False
    for line in lines:
        starts_record = line[:4].isdigit()
        if any(alarm in line for alarm in _LOG_ALARMS):
            alarms.append(line)
            in_record = True
        elif in_record and not starts_record:
            alarms[-1] += line
        else:
            in_record = False
    return alarms


def run_fuzz(options: Options) -> Report:
    """Start pusherd, fuzz it, check it is still up and its log is clean."""
    with run_pusherd(gen.SERVER_TOML) as server:
        async def campaign() -> Report:
            report = await Campaign(server.port, options).run()
            report.server_alive = server.process.poll() is None and await _up(server.port)
            return report

        report = asyncio.run(campaign())
    # After the stop: a shutdown that raised would show here too.
    report.log_alarms = find_log_alarms(list(server.output))
    return report
