"""Fixtures for the server tests: a real pusherd on 127.0.0.1 port 0, in this event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pusherd.config import load_config
from pusherd.server.server import Server

# Two apps: the default one (client events and user authentication on) and a second one
# with subscription counts on, to check isolation between apps in one process.
DEFAULT_TOML = """
[server]
host = "127.0.0.1"
port = 0
activity_timeout = 120
shutdown_timeout = 1

[[apps]]
id = "1001"
key = "app-key"
secret = "app-secret"
enable_client_events = true
enable_user_authentication = true

[[apps]]
id = "1002"
key = "other-key"
secret = "other-secret"
enable_client_events = true
enable_subscription_count = true
"""

StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start pusherd in-process from TOML text; every server started is shut down after."""
    servers: list[Server] = []

    async def start(toml: str = DEFAULT_TOML) -> Server:
        path = tmp_path / f"pusherd-{len(servers)}.toml"
        path.write_text(toml)
        server = Server(load_config(path, {}))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    return await start_server()


@pytest.fixture
def port(server: Server) -> int:
    return server.port
