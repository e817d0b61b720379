"""Logging setup: named loggers, text or JSON lines on stderr, and the ``--debug`` frame log.

Loggers: ``pusherd.server`` (start, drain, stop), ``pusherd.ws`` (connections opened,
refused, closed; client errors; slow consumers), ``pusherd.http`` (HTTP API errors),
``pusherd.ws.debug`` (every frame in and out, WebSocket and HTTP fallback, at level
debug: ``--debug`` or ``--log-level debug``), ``pusherd.fallback``, ``pusherd.adapter``,
``pusherd.redis``, ``pusherd.webhooks``, ``pusherd.workers``, ``pusherd.metrics``,
``pusherd.config``, and ``pusherd.banner`` (the start-up banner as one record in JSON
format, at any level). Log lines go to stderr; in text format the start-up banner goes to
stdout.

With ``pusherd --workers N`` each worker's lines say which worker wrote them
(:func:`tag_worker`): ``[worker 1 pid 4242 node host-4242-1a2b3c4d]`` in text, the fields
``worker``, ``pid`` and ``node`` in JSON.

No secret reaches a log line: the code logs ids, keys, names, codes and reasons, and the
frame log replaces every ``auth`` value (a channel or sign-in signature) with
``<redacted>`` before it is written.

No client writes a line of its own: many values in a line come from clients (channel and
event names, close reasons, keys, paths, Origin, user ids), so the text format escapes
every control character of the message (``\n``, ``\r``, ``\x1b``...; the JSON format
escapes them as JSON does).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
REDACTED = "<redacted>"

# C0 controls, DEL, C1 controls and the Unicode line and paragraph separators: each one
# could end a line, move the cursor or colour a terminal.
_CONTROLS = {code: (repr(chr(code))[1:-1] if code < 0x100 else f"\\u{code:04x}")
             for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}


def escape_controls(text: str) -> str:
    """`text` with every control character written as its escape (``\\n``, ``\\x1b``,
    ``\\u2028``): one log line stays one line, whatever a client sent."""
    if text.isprintable():  # the usual case: nothing to do
        return text
    return text.translate(_CONTROLS)


def redact_frame(payload: bytes) -> str:
    """A frame's JSON for the debug log with every ``auth`` field (at any depth, also
    inside a JSON-encoded ``data`` string) replaced by ``<redacted>``."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        text = payload[:2000].decode(errors="replace")
        return "<unparsable frame>" if "auth" in text else text
    return orjson.dumps(_redact(value)).decode()[:4000]


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if k in ("auth", "auth_signature") else _redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, str) and value[:1] == "{" and '"auth"' in value:
        try:
            return orjson.dumps(_redact(orjson.loads(value))).decode()
        except orjson.JSONDecodeError:
            return REDACTED
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, the message's control characters escaped
    (:func:`escape_controls`); a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """The line for `record`, its message escaped."""
        message = record.message
        record.message = escape_controls(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(worker_tag)s]: %(message)s"


class WorkerTag(logging.Filter):
    """Adds the worker's index, pid and (once known) node id to every record that reaches
    a handler: as ``worker_tag`` for the text format, as ``worker``/``pid``/``node`` for
    JSON. Set :attr:`node` when the node id is known."""

    def __init__(self, index: int, pid: int, json_fields: bool) -> None:
        super().__init__()
        self.index = index
        self.pid = pid
        self.parent_pid = os.getppid()  # the --workers parent, to notice its death
        self.node = ""
        self.json_fields = json_fields

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag `record` (never drops it)."""
        if self.json_fields:
            record.worker = self.index
            record.pid = self.pid
            if self.node:
                record.node = self.node
        else:
            record.worker_tag = (f"worker {self.index} pid {self.pid}"
                                 + (f" node {self.node}" if self.node else ""))
        return True


def tag_worker(index: int, pid: int) -> WorkerTag:
    """From now on, every log line of this process names worker `index` (pid `pid`);
    returns the tag so that the caller can add the node id when it is known. Call it in
    the worker process, after :func:`configure_logging` (inherited from the parent)."""
    root = logging.getLogger()
    json_fields = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    tag = WorkerTag(index, pid, json_fields)
    for handler in root.handlers:
        handler.addFilter(tag)
        if not json_fields:
            handler.setFormatter(TextFormatter(WORKER_TEXT_FORMAT))
    return tag


def configure_logging(level: str, log_format: str, debug: bool) -> None:
    """Send pusherd's log lines to stderr at `level` (``debug`` forces DEBUG), as ``text``
    or ``json``; with `debug`, also every WebSocket frame (``pusherd.ws.debug``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = TextFormatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else level.upper())
    # websockets' own frame log has no socket id and would print signatures: it passes
    # warnings only; the frame log with socket ids is pusherd.ws.debug.
    logging.getLogger("pusherd.ws.frames").setLevel(logging.WARNING)
    logging.getLogger("pusherd.ws.debug").setLevel(logging.DEBUG if debug else logging.WARNING)
    # Libraries' debug chatter (asyncio's selector notes) is not pusherd's to show.
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    # The banner (one record in JSON format) is said whatever the level, as in text.
    logging.getLogger("pusherd.banner").setLevel(logging.INFO)
