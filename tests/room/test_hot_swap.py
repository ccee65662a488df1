"""Re-indexing while the bot serves: atomic swaps under load, external publishes, failures."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from bot.errors import BuildError, ConfigError
from bot.retrieval.index import current_version, load_index
from bot.retrieval.search import Retriever
from bot.room.answerer import LiveAnswerer
from bot.room.service import RoomService
from bot.settings import Settings, load_settings
from bot.store.dashboard_store import LAST_BUILD_KEY
from bot.store.database import Database
from bot.store.room_store import RoomStore
from index_builder.build import build_index

QUESTION = "How do I stop training when the validation loss stops improving?"


def setup(tmp_path: Path, mini_docs: Path, encoder: Any) -> tuple[Settings, Path, LiveAnswerer]:
    docs = tmp_path / "docs"
    shutil.copytree(mini_docs, docs)
    settings = load_settings(data_dir=tmp_path / "data", docs_dir=docs, include_keras_api=False)
    build_index(settings, encoder=encoder)
    retriever = Retriever(load_index(settings.index_root), encoder)
    return settings, docs, LiveAnswerer(settings, retriever)


def add_page(docs: Path, name: str, text: str) -> None:
    (docs / "guides" / "md" / f"{name}.md").write_text(text, encoding="utf-8")


def test_queries_keep_working_while_two_rebuilds_publish(
    tmp_path: Path, mini_docs: Path, encoder: Any
) -> None:
    settings, docs, answerer = setup(tmp_path, mini_docs, encoder)
    published = {answerer.version}
    seen: list[tuple[str | None, int]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def ask_forever() -> None:
        while not stop.is_set():
            try:
                reply = answerer(QUESTION)
                seen.append((reply.index_version, len(reply.sources)))
            except BaseException as exc:  # any failure is the test's failure
                failures.append(exc)
                return

    worker = threading.Thread(target=ask_forever)
    worker.start()
    try:
        for n in (1, 2):
            add_page(docs, f"extra_{n}", f"# Extra page {n}\n\nMore about callbacks, take {n}.\n")
            version = answerer.republish()
            assert version is not None and current_version(settings.index_root) == version
            published.add(version)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not failures, failures
    assert len(published) == 3 and len(seen) > 3
    assert {v for v, _ in seen} <= published  # every answer came from one complete version
    assert all(n > 0 for _, n in seen)  # ... and had its sources
    # A query in flight during a swap finishes on the index it started with; the next one
    # runs on the last publish.
    assert answerer(QUESTION).index_version == answerer.version == version


def test_an_index_published_outside_is_picked_up(
    tmp_path: Path, mini_docs: Path, encoder: Any
) -> None:
    settings, docs, answerer = setup(tmp_path, mini_docs, encoder)
    assert answerer.reload() is None  # nothing new
    add_page(docs, "outside", "# Published by cron\n\nA page from a nightly job.\n")
    report = build_index(settings, encoder=encoder)  # as `supportbot index build` would
    assert answerer.reload() == report.version
    assert answerer.version == report.version


def test_a_failed_rebuild_keeps_serving_and_is_recorded(
    tmp_path: Path, mini_docs: Path, encoder: Any
) -> None:
    settings, docs, answerer = setup(tmp_path, mini_docs, encoder)
    before = answerer.version
    shutil.rmtree(docs)  # the checkout vanished
    with pytest.raises(BuildError):
        answerer.republish()
    assert answerer.version == before and answerer(QUESTION).sources

    class Transport:
        user_id = "@bot:x"

    db = Database(settings.resolved_database_url)
    db.create_schema()
    store = RoomStore(db)
    service = RoomService(settings, Transport(), store, answerer)  # type: ignore[arg-type]
    asyncio.run(service.jobs.run_build("scheduled", answerer.republish))
    record = json.loads(store.get_state(LAST_BUILD_KEY) or "{}")
    assert record["ok"] is False and record["trigger"] == "scheduled"
    assert "docs dir" in record["error"]
    service.executor.shutdown()
    db.close()


def test_reindex_schedule_is_validated() -> None:
    assert load_settings(reindex_schedule="off").reindex_schedule == "off"
    assert load_settings(reindex_schedule="0 2 * * 1").reindex_schedule == "0 2 * * 1"
    with pytest.raises(ConfigError, match="SUPPORTBOT_REINDEX_SCHEDULE"):
        load_settings(reindex_schedule="every night")
