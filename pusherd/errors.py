"""The one exception hierarchy of pusherd.

Protocol errors carry their Pusher error code (spec §4) and render their own
``pusher:error`` frame, so each shell catches in one place. HTTP API errors carry their
status (spec §12.2). This module imports nothing from pusherd.
"""

from __future__ import annotations

import orjson


class PusherdError(Exception):
    """Base of every error pusherd raises on purpose."""


class ConfigError(PusherdError):
    """A configuration key has a bad value; the message names the key and the value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config error: {key}: {message}")
        self.key = key
        self.detail = message


class SendBodyError(PusherdError):
    """An HTTP fallback ``xhr_send`` body that is not a JSON array of strings (spec §15.2);
    answered with HTTP 400, the session unharmed."""


class PusherError(PusherdError):
    """An error answered on a WebSocket with a ``pusher:error`` frame (spec §3.2).

    ``code`` is the Pusher error code or ``None`` (hosted Pusher sends ``null`` for
    malformed messages and signature failures). The connection stays open: a session
    ends a connection with an explicit close action instead (§1.4).
    """

    code: int | None = None

    def __init__(self, message: str, code: int | None = None, channel: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.channel = channel

    def to_frame(self) -> bytes:
        """The ``pusher:error`` frame, with object ``data`` as hosted Pusher sends it."""
        return orjson.dumps(
            {"event": "pusher:error", "data": {"code": self.code, "message": self.message}}
        )


class MessageFormatError(PusherError):
    """Malformed client frame: not JSON, wrong types, unknown event (spec §3.1).

    Code ``null``: 4200 would tell pusher-js to reconnect, which bad input must never do.
    """

    code = None


class SubscriptionRefused(PusherError):
    """A ``pusher:subscribe`` that cannot be honoured (spec §7.5): the socket stays open.

    The ``pusher:error`` carries code 4009 (spec §7.5). ``status`` goes in the additional
    ``pusher:subscription_error`` frame that lets Laravel Echo's ``.error()`` callback
    fire, and tells the causes apart: 401 bad or missing signature, 400 malformed
    ``channel_data``, 4009 bad channel name, 4100 presence channel full, 4301 ``user_info``
    too large (the statuses soketi uses).
    """

    code = 4009

    def __init__(self, message: str, channel: str, status: int = 401, code: int | None = 4009):
        super().__init__(message, code=code, channel=channel)
        self.status = status

    def to_subscription_error_frame(self) -> bytes:
        """The ``pusher:subscription_error`` frame Laravel Echo's ``.error()`` listens for."""
        return orjson.dumps(
            {
                "event": "pusher:subscription_error",
                "channel": self.channel,
                "data": {"type": "AuthError", "error": self.message, "status": self.status},
            }
        )


class SigninRefused(PusherError):
    """A ``pusher:signin`` that failed verification (spec §10.1): error 4009, stays open."""

    code = 4009


class ClientEventRejected(PusherError):
    """A ``client-*`` event that breaks a rule of spec §9: error 4301, event dropped."""

    code = 4301


class HttpApiError(PusherdError):
    """An HTTP API request refused with ``status`` (spec §12.2); the body is the message.

    ``log_message`` is what the log and the debug console show: the message, or, when the
    message repeats what the client sent that must not be logged (its signature), a
    version without it."""

    def __init__(self, status: int, message: str, log_message: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.log_message = message if log_message is None else log_message
