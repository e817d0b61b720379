"""State transitions reach the adapter's listeners (the seam webhooks and metrics use)."""

from __future__ import annotations

import asyncio

from pusherd.core.transitions import ClientEventSent, Transition
from pusherd.server.server import Server
from tests.pusherd.wire import Client, call, sdk


async def test_listeners_receive_each_transition_once_in_order(server: Server) -> None:
    events: list[Transition] = []
    presence_vacated = asyncio.Event()

    def record(event: Transition) -> None:
        events.append(event)
        if event.name == "channel_vacated" and event.channel == "presence-room":
            presence_vacated.set()

    server.adapter.add_listener(record)
    port = server.port
    ada, ada_again, linus = [await Client.open(port) for _ in range(3)]

    async def join(client: Client, user_id: str) -> None:
        auth = sdk(port).authenticate("presence-room", client.socket_id, {"user_id": user_id})
        await client.subscribe_ok("presence-room", auth["auth"], auth["channel_data"])

    await join(ada, "1")
    await join(ada_again, "1")  # a second socket of the same user: no member_added
    await join(linus, "2")
    await ada.expect("pusher_internal:member_added", "presence-room")
    auth = sdk(port).authenticate("private-chat", ada.socket_id)
    await ada.subscribe_ok("private-chat", auth["auth"])
    await linus.subscribe_ok("private-chat",
                             sdk(port).authenticate("private-chat", linus.socket_id)["auth"])
    await ada.send({"event": "client-typing", "channel": "private-chat", "data": {"x": 1}})
    await linus.expect("client-typing", "private-chat")
    await linus.close()
    await ada.close()
    await ada_again.close()
    # The server learns of the closes asynchronously: wait for the last transition.
    await asyncio.wait_for(presence_vacated.wait(), 5)
    names = [(e.name, e.channel, getattr(e, "user_id", None)) for e in events]
    assert names[:4] == [
        ("channel_occupied", "presence-room", None),
        ("member_added", "presence-room", "1"),
        ("member_added", "presence-room", "2"),
        ("channel_occupied", "private-chat", None),
    ]
    client_events = [e for e in events if isinstance(e, ClientEventSent)]
    assert len(client_events) == 1
    assert (client_events[0].event, client_events[0].data) == ("client-typing", {"x": 1})
    assert client_events[0].socket_id == ada.socket_id
    tail = names[5:]
    assert ("member_removed", "presence-room", "2") in tail
    assert tail.count(("member_removed", "presence-room", "1")) == 1  # after both sockets
    assert ("channel_vacated", "private-chat", None) in tail
    assert tail[-1] == ("channel_vacated", "presence-room", None)
    assert await call(sdk(port).channels_info) == {"channels": {}}
