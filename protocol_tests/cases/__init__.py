"""Every case module; importing this package registers all cases in order."""

from . import (  # noqa: F401
    activity,
    browser,
    channels,
    client_events,
    clients,
    handshake,
    http_api,
    optional,
    presence,
    users,
)
