"""Every case module; importing this package registers all cases, in spec order."""

import importlib

MODULES = ("handshake", "channels", "presence", "client_events", "users", "http_api",
           "activity", "clients", "browser", "optional", "fallback")

for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
