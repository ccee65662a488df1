"""The test homeserver helper against a real Synapse on 127.0.0.1 (see tests/synapse_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.synapse_server import (
    DEFAULT_RATE_LIMITS,
    MatrixHTTPError,
    SynapseServer,
    synapse_skip_reason,
)


def _require_synapse() -> None:
    reason = synapse_skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    _require_synapse()
    with SynapseServer(tmp_path_factory.mktemp("synapse")) as server:
        yield server


def test_rate_limit_overrides_merge_over_the_defaults(tmp_path: Path) -> None:
    server = SynapseServer(tmp_path, rate_limits={"rc_login": {"account": {"burst_count": 3}}})
    assert server.rate_limits["rc_login"]["account"] == {"per_second": 10_000, "burst_count": 3}
    assert server.rate_limits["rc_login"]["address"] == DEFAULT_RATE_LIMITS["rc_login"]["address"]
    assert server.rate_limits["rc_message"] == DEFAULT_RATE_LIMITS["rc_message"]
    assert server.base_url == f"http://127.0.0.1:{server.port}"
    with pytest.raises(ValueError, match="rate-limit"):
        server.set_rate_limits({"message": {"per_second": 1}})


def test_users_room_join_and_mention(synapse: SynapseServer) -> None:
    alice = synapse.register("alice")
    bob = synapse.register("bob", "bob-password")
    assert (alice.user_id, bob.user_id) == ("@alice:localhost", "@bob:localhost")
    assert synapse.whoami(bob) == bob.user_id

    bob_again = synapse.login("bob", "bob-password")
    assert bob_again.user_id == bob.user_id
    assert bob_again.device_id != bob.device_id
    assert bob_again.access_token != bob.access_token

    room_id = synapse.create_room(alice, alias="keras-help")
    assert synapse.join(bob, "#keras-help:localhost") == room_id

    event_id = synapse.send_text(
        bob,
        room_id,
        "alice: how do I freeze a layer?",
        mentions=[alice.user_id],
        formatted_body='<a href="https://matrix.to/#/@alice:localhost">alice</a>: how do I …',
    )
    reply_id = synapse.send_text(
        alice,
        room_id,
        "Set layer.trainable = False",
        relates_to={"m.in_reply_to": {"event_id": event_id}},
        txn_id="reply-1",
    )
    # The same transaction id is the same event, sent once.
    assert synapse.send_text(alice, room_id, "ignored", txn_id="reply-1") == reply_id

    texts = synapse.messages(bob, room_id, event_type="m.room.message")
    assert [event["event_id"] for event in texts] == [event_id, reply_id]
    question = texts[0]
    assert question["sender"] == bob.user_id
    assert question["content"]["msgtype"] == "m.text"
    assert question["content"]["m.mentions"] == {"user_ids": [alice.user_id]}
    assert question["content"]["format"] == "org.matrix.custom.html"
    assert texts[1]["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": event_id}}

    everything = synapse.messages(alice, room_id)
    assert everything[0]["type"] == "m.room.create"  # oldest first
    assert everything[-1]["event_id"] == reply_id


def test_room_and_messages_survive_a_crash(synapse: SynapseServer) -> None:
    carol = synapse.register("carol")
    room_id = synapse.create_room(carol, public=False)
    event_id = synapse.send_text(carol, room_id, "written before the crash")

    synapse.kill()
    assert not synapse.running
    with pytest.raises(OSError):
        synapse.whoami(carol)
    synapse.start()

    assert synapse.whoami(carol) == carol.user_id  # access tokens live in the database too
    texts = synapse.messages(carol, room_id, event_type="m.room.message")
    assert [(event["event_id"], event["content"]["body"]) for event in texts] == [
        (event_id, "written before the crash")
    ]


def test_logged_out_token_is_rejected(synapse: SynapseServer) -> None:
    dave = synapse.register("dave", "dave-password")
    laptop = synapse.login("dave", "dave-password")
    synapse.logout(laptop)

    with pytest.raises(MatrixHTTPError) as caught:
        synapse.whoami(laptop)
    assert (caught.value.status, caught.value.errcode) == (401, "M_UNKNOWN_TOKEN")
    assert synapse.whoami(dave) == dave.user_id  # the other device is untouched

    with pytest.raises(MatrixHTTPError) as missing:
        synapse.join(dave, "#no-such-room:localhost")
    assert (missing.value.status, missing.value.errcode) == (404, "M_NOT_FOUND")


def test_rate_limited_sends_are_ridden_out(tmp_path: Path) -> None:
    _require_synapse()
    limits = {"rc_message": {"per_second": 4, "burst_count": 2}}
    with SynapseServer(tmp_path, rate_limits=limits) as server:
        erin = server.register("erin")
        room_id = server.create_room(erin)
        server.rate_limit_hits.clear()

        # Without the helper's patience, rapid sends hit the limit.
        path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message"
        with pytest.raises(MatrixHTTPError) as caught:
            for i in range(10):
                server.request(
                    "PUT",
                    f"{path}/raw-{i}",
                    user=erin,
                    body={"msgtype": "m.text", "body": f"raw {i}"},
                    ride_rate_limits=False,
                )
        assert (caught.value.status, caught.value.errcode) == (429, "M_LIMIT_EXCEEDED")
        assert caught.value.retry_after_ms is not None and caught.value.retry_after_ms > 0
        assert server.rate_limit_hits == []

        # The helpers sleep retry_after_ms and retry until every message is in.
        sent = [server.send_text(erin, room_id, f"burst {i}") for i in range(6)]
        assert server.rate_limit_hits, "expected at least one 429 to be ridden out"
        texts = server.messages(erin, room_id, event_type="m.room.message")
        assert [event["event_id"] for event in texts][-6:] == sent
        assert [event["content"]["body"] for event in texts][-6:] == [
            f"burst {i}" for i in range(6)
        ]
