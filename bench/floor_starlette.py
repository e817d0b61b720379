"""Floor server, variant (A): Starlette WebSocket routes over uvicorn (uvloop, httptools).

The same minimal Pusher features as `bench.floor_frameonce`, written the way a Starlette
application naturally would: one WebSocket route per connection, one HTTP route for
``POST /apps/{id}/events``, and the fan-out awaiting one ASGI ``send`` per recipient. The
event's JSON text is built once per trigger; the WebSocket frame is built per recipient by
the server's WebSocket implementation (``--ws``, default uvicorn's Sans-I/O websockets).
There is no per-socket outbound cap to enforce: ASGI exposes no write-buffer size.

Run: ``python -m bench.floor_starlette --port 0`` prints
``floor-starlette listening on http://127.0.0.1:PORT`` once bound.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.floor_frameonce import raise_open_file_limit

CHANNELS: dict[str, set[WebSocket]] = {}
APP = {"id": "1001", "key": "app-key"}


async def pusher_socket(websocket: WebSocket) -> None:
    if websocket.path_params["key"] != APP["key"]:
        await websocket.close(code=4001)
        return
    await websocket.accept()
    socket_id = f"{secrets.randbelow(10**9)}.{secrets.randbelow(10**9)}"
    await websocket.send_text(
        orjson.dumps(
            {
                "event": "pusher:connection_established",
                "data": orjson.dumps({"socket_id": socket_id, "activity_timeout": 120}).decode(),
            }
        ).decode()
    )
    subscribed: set[str] = set()
    try:
        while True:
            raw = await websocket.receive_text()
            try:
                message = orjson.loads(raw)
                event = message["event"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if event == "pusher:subscribe":
                data = message.get("data")
                if isinstance(data, str):
                    data = orjson.loads(data)
                channel = data["channel"]
                CHANNELS.setdefault(channel, set()).add(websocket)
                subscribed.add(channel)
                await websocket.send_text(
                    orjson.dumps(
                        {
                            "event": "pusher_internal:subscription_succeeded",
                            "channel": channel,
                            "data": "{}",
                        }
                    ).decode()
                )
            elif event == "pusher:ping":
                await websocket.send_text('{"event":"pusher:pong","data":{}}')
    except WebSocketDisconnect:
        pass
    finally:
        for channel in subscribed:
            subscribers = CHANNELS.get(channel)
            if subscribers is not None:
                subscribers.discard(websocket)
                if not subscribers:
                    del CHANNELS[channel]


async def trigger(request: Request) -> Response:
    if request.path_params["app_id"] != APP["id"]:
        return Response(b'{"error":"unknown app"}', status_code=404)
    try:
        message = orjson.loads(await request.body())
        name = message["name"]
        data = message["data"]
        channels = message.get("channels") or [message["channel"]]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return Response(b'{"error":"bad event"}', status_code=400)
    for channel in channels:
        subscribers = CHANNELS.get(channel)
        if not subscribers:
            continue
        text = orjson.dumps({"event": name, "channel": channel, "data": data}).decode()
        for websocket in list(subscribers):
            try:
                await websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError):
                subscribers.discard(websocket)
    return Response(b"{}", media_type="application/json")


async def up(request: Request) -> Response:
    return Response(b"{}", media_type="application/json")


app = Starlette(
    routes=[
        WebSocketRoute("/app/{key}", pusher_socket),
        Route("/apps/{app_id}/events", trigger, methods=["POST"]),
        Route("/up", up),
    ]
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--app-id", default=os.environ.get("PUSHERD_APP_ID", "1001"))
    parser.add_argument("--app-key", default=os.environ.get("PUSHERD_APP_KEY", "app-key"))
    parser.add_argument("--ws", default="websockets-sansio",
                        choices=["websockets-sansio", "websockets", "wsproto"])
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    APP["id"] = args.app_id
    APP["key"] = args.app_key
    raise_open_file_limit()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(4096)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", ws=args.ws, lifespan="off",
        log_level="warning", access_log=False, backlog=4096, ws_max_size=65536,
        ws_ping_interval=None, ws_ping_timeout=None,
    )
    server = uvicorn.Server(config)
    print(f"floor-starlette listening on http://{host}:{port}", flush=True)
    import uvloop

    uvloop.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
