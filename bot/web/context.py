"""What the web app (dashboard, local room, health) needs from the running service.

The run wiring builds one ``WebContext`` from the worker's ``DashboardPort`` (``context_for``)
and the handlers reach it through ``CTX_KEY``; handlers never import the service, so they can
be tested against a context built from real parts (a database, an index) without a room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from bot.answering.reply import SuggestedReply
from bot.metrics import Metrics
from bot.room.dashboard_port import DashboardPort
from bot.settings import Settings
from bot.store.database import Database
from bot.store.room_store import RoomStore

if TYPE_CHECKING:
    from bot.store.local_room import LocalRoom


ReadyCheck = Callable[[], tuple[bool, str]]


@dataclass
class WebContext:
    settings: Settings
    db: Database
    store: RoomStore
    metrics: Metrics
    ready: ReadyCheck
    # Blocking ``question -> SuggestedReply`` on the current index; call it through ``run_cpu``.
    answer: Callable[[str], SuggestedReply] | None = None
    # Runs a blocking callable in the service's one CPU worker thread (model, FAISS).
    run_cpu: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None
    # Blocking, unit-normalised embeddings of texts (for grouping doc gaps); via ``run_cpu``.
    encode: Callable[[list[str]], np.ndarray] | None = None
    # Post Markdown to a question's thread as the bot, recorded as posted by a maintainer and
    # the question as answered by them; returns the reply's event id.
    # (question_event_id, markdown, maintainer name)
    post_reply: Callable[[str, str, str], Awaitable[str]] | None = None
    # Start a full re-index now; returns at once (the build runs in the background).
    rebuild: Callable[[], Awaitable[None]] | None = None
    # The manifest of the index being served ({} when none is loaded).
    index_manifest: Callable[[], dict[str, Any]] | None = None
    # Tell the service that past answers changed (a pair approved): it re-publishes the index.
    past_answers_changed: Callable[[], None] | None = None
    # The embedded room, when the bot runs without a homeserver.
    local_room: LocalRoom | None = None


CTX_KEY: web.AppKey[WebContext] = web.AppKey("ctx", WebContext)


def context_for(port: DashboardPort, *, local_room: LocalRoom | None = None) -> WebContext:
    """The web app's view of a running worker; ``local_room``: the embedded room it serves."""
    return WebContext(
        settings=port.settings,
        db=port.db,
        store=port.store,
        metrics=port.metrics,
        ready=port.ready,
        answer=port.answer,
        run_cpu=port.run_cpu,
        encode=port.encode,
        post_reply=port.post,
        rebuild=port.rebuild,
        index_manifest=port.index_manifest,
        local_room=local_room,
        past_answers_changed=port.past_answers_changed,
    )
