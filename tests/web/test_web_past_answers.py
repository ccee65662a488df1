"""The dashboard's review of past answers proposed by an asker's reaction (``/past-answers``):
listed escaped, approved or rejected by a signed-in maintainer with the session's CSRF token,
and searchable (handed to index builds) only once approved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from bot.corpus.pair_changes import Upsert
from bot.corpus.past_answers import PastAnswer
from bot.store.past_answers import PastAnswerStore
from bot.store.room_store import RoomStore
from tests.web.web_helpers import ALICE, BOB, ROOM, add_user, make_context, serve, signed_in

Client = TestClient[Any, Any]
XSS = "<img src=x onerror=alert(1)>"


def propose(store: RoomStore, question_id: str, answer: str) -> str:
    """What the service stores for an asker's ✅ on someone's reply."""
    key = f"thread:{question_id}"
    change = Upsert(
        pair=PastAnswer(
            key=key,
            question=f"Why does fit() hang? {XSS}",
            answer=answer,
            url=f"https://matrix.to/#/{ROOM}/{question_id}",
            asked_by=ALICE,
            answered_by=BOB,
            established_by="accepted-reaction",
        ),
        room_id=ROOM,
        question_event_id=question_id,
        answer_event_id=f"{question_id}-answer",
        review="pending",
    )
    assert store.apply_changes([change]) == 1
    return key


def test_pending_pairs_are_reviewed_on_the_dashboard(tmp_path: Path, database_url: str) -> None:
    changed: list[bool] = []
    ctx = make_context(tmp_path, database_url, past_answers_changed=lambda: changed.append(True))
    add_user(ctx)
    first = propose(ctx.store, "$q1", f"Run pip install evil-package {XSS}")
    second = propose(ctx.store, "$q2", "Set steps_per_epoch.")
    past = PastAnswerStore(ctx.db)

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        page = await client.get("/past-answers")
        html = await page.text()
        assert page.status == 200
        assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "Run pip install evil-package" in html and "Set steps_per_epoch." in html
        assert BOB in html and ALICE in html
        assert past.list_all() == []  # nothing of it is searchable yet

        # Like every dashboard POST: no token, no decision.
        form = {"key": first, "decision": "approve"}
        refused = await client.post("/past-answers/review", data=form, allow_redirects=False)
        assert refused.status == 403 and past.list_all() == []

        done = await client.post(
            "/past-answers/review", data={**form, "csrf_token": csrf}, allow_redirects=False
        )
        assert done.status == 303 and done.headers["Location"] == "/past-answers?flash=approved"
        assert [p.key for p in past.list_all()] == [first]
        assert changed == [True]  # the service re-publishes the index

        form = {"key": second, "decision": "reject", "csrf_token": csrf}
        done = await client.post("/past-answers/review", data=form, allow_redirects=False)
        assert done.headers["Location"] == "/past-answers?flash=rejected"
        assert [p.key for p in past.list_all()] == [first] and changed == [True]

        after = await (await client.get("/past-answers?flash=rejected")).text()
        assert "Rejected" in after and "Nothing is waiting for a review." in after
        # Deciding again (another tab, a replay) changes nothing and says so.
        form = {"key": second, "decision": "approve", "csrf_token": csrf}
        again = await client.post("/past-answers/review", data=form, allow_redirects=False)
        assert again.headers["Location"] == "/past-answers?flash=review-gone"
        assert [p.key for p in past.list_all()] == [first]
        bad = {"key": first, "decision": "maybe", "csrf_token": csrf}
        assert (await client.post("/past-answers/review", data=bad)).status == 400

    serve(ctx, scenario)


def test_the_review_page_needs_a_sign_in(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    propose(ctx.store, "$q1", "answer")

    async def scenario(client: Client) -> None:
        page = await client.get("/past-answers", allow_redirects=False)
        assert page.status == 302 and page.headers["Location"].startswith("/login")
        form = {"key": "thread:$q1", "decision": "approve", "csrf_token": "x"}
        post = await client.post("/past-answers/review", data=form, allow_redirects=False)
        assert post.status == 403
        assert PastAnswerStore(ctx.db).list_all() == []

    serve(ctx, scenario)
