"""Power levels follow the room: a change of ``m.room.power_levels`` reaches the bot through
the sync (in the timeline, or in the state section of a limited one), against a real Synapse."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from bot.chat.events import PowerLevels
from bot.gitter_client import MatrixTransport
from tests.synapse_server import MatrixUser, SynapseServer


def _set_levels(synapse: SynapseServer, admin: MatrixUser, room: str, **changes: object) -> None:
    path = f"/_matrix/client/v3/rooms/{quote(room, safe='')}/state/m.room.power_levels/"
    content = synapse.request("GET", path, user=admin)
    for key, value in changes.items():
        if key == "users":
            content["users"].update(value)  # type: ignore[call-overload]
        else:
            content[key] = value
    synapse.request("PUT", path, user=admin, body=content)


async def _sync_until(
    transport: MatrixTransport, token: str, room: str, seen: object
) -> tuple[str, PowerLevels]:
    """Sync (long-polls that return as soon as something arrives) until ``seen(levels)``."""
    for _ in range(20):
        batch = await transport.sync(token)
        token = batch.next_token
        if seen(transport.power_levels[room]):  # type: ignore[operator]
            break
    return token, transport.power_levels[room]


def test_a_power_level_raised_mid_run_is_followed(synapse: SynapseServer) -> None:
    bot = synapse.register("levels-bot")
    alice, bob, carol = (synapse.register(f"levels-{who}") for who in ("alice", "bob", "carol"))
    room = synapse.create_room(alice)
    for user in (bob, carol):
        synapse.join(user, room)

    async def scenario() -> None:
        transport = MatrixTransport(
            synapse.base_url,
            bot.user_id,
            bot.access_token,
            [room],
            sync_timeout_ms=2000,
            timeline_limit=3,
        )
        await transport.connect()
        try:
            first = await transport.sync(None)
            levels = transport.power_levels[room]
            assert levels.of(alice.user_id) >= 100  # the creator (room version 12: unlimited)
            assert levels.of(bob.user_id) == 0

            # Alice makes Bob a moderator: the next syncs carry the change.
            _set_levels(synapse, alice, room, users={bob.user_id: 50}, redact=40)
            token, levels = await _sync_until(
                transport, first.next_token, room, lambda pl: pl.of(bob.user_id) == 50
            )
            assert (levels.of(bob.user_id), levels.redact) == (50, 40)

            # A change followed by more messages than the timeline holds arrives in the
            # state section of the limited sync.
            _set_levels(synapse, alice, room, users={carol.user_id: 75})
            for n in range(6):
                synapse.send_text(alice, room, f"filler {n}")
            token, levels = await _sync_until(
                transport, token, room, lambda pl: pl.of(carol.user_id) == 75
            )
            assert levels.of(carol.user_id) == 75 and levels.of(bob.user_id) == 50
        finally:
            await transport.close()

    asyncio.run(scenario())
