"""The running bot's scheduled re-index: the cron loop, the docs `git pull`, a failing pull.

Real parts throughout: a git "upstream" of the tiny keras-io corpus and the bot's clone of it
(`git` on the local file system), the real index build and the real model, and
``RoomService.run`` with its re-index loop on a cron schedule that fires a second or two after
the start (cron with a seconds field); only the chat transport is in memory.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.retrieval.index import current_version, load_index
from bot.retrieval.search import Retriever
from bot.room.answerer import LiveAnswerer
from bot.room.service import RoomService
from bot.settings import Settings, load_settings
from bot.store.dashboard_store import LAST_BUILD_KEY
from bot.store.database import Database
from bot.store.room_store import RoomStore
from index_builder.build import build_index
from tests.conftest import MINI_DOCS
from tests.room.test_service_units import FakeTransport
from tests.room.test_workers import run_until

NEW_SECTION = (
    "\n## Sharded checkpoints\n\n"
    "Pass `sharded=True` to write a zebrafish-sized model as several shard files.\n"
)
PAGE = Path("guides/md/saving_models.md")


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Docs Writer", "-c", "user.email=docs@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, Path]:
    """(upstream, the bot's clone): the tiny corpus, one commit."""
    upstream = tmp_path / "upstream"
    shutil.copytree(MINI_DOCS, upstream)
    git("init", "--quiet", "--initial-branch=main", cwd=upstream)
    git("add", "-A", cwd=upstream)
    git("commit", "--quiet", "-m", "docs", cwd=upstream)
    clone = tmp_path / "docs"
    git("clone", "--quiet", str(upstream), str(clone), cwd=tmp_path)
    return upstream, clone


def soon_every_minute() -> str:
    """A cron (seconds field last) that fires two seconds from now, then once a minute."""
    return f"* * * * * {(datetime.now(UTC).second + 2) % 60}"


@pytest.fixture
def bot_parts(
    tmp_path: Path, checkout: tuple[Path, Path], encoder: Any
) -> Iterator[tuple[Settings, LiveAnswerer, RoomStore]]:
    """Settings, a published index of the clone, the answerer serving it, and a store."""
    _upstream, clone = checkout
    settings = load_settings(
        data_dir=tmp_path / "data",
        docs_dir=clone,
        include_keras_api=False,
        docs_git_pull=True,
        index_watch_seconds=0,
        serve_http=False,
    )
    assert build_index(settings, encoder=encoder).published
    answerer = LiveAnswerer(settings, Retriever(load_index(settings.index_root), encoder))
    db = Database(settings.resolved_database_url)
    db.create_schema()
    yield settings, answerer, RoomStore(db)
    db.close()


def run_until_first_build(
    settings: Settings,
    answerer: LiveAnswerer,
    store: RoomStore,
    and_then: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Run the service until its re-index loop has recorded one build (and ``and_then()``
    holds); return the record."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer-reindex")
    service = RoomService(
        # Set now, not when the index was built: the first run comes two seconds after start.
        settings.model_copy(update={"reindex_schedule": soon_every_minute()}),
        FakeTransport(),
        store,
        answerer,
        executor=executor,
        republish=answerer.republish,
        reindex=answerer.scheduled_rebuild,
        reload=answerer.reload,
    )
    try:
        run_until(
            lambda: store.get_state(LAST_BUILD_KEY) is not None and and_then(),
            service,
            limit=180,
        )
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    raw = store.get_state(LAST_BUILD_KEY)
    assert raw is not None
    record: dict[str, Any] = json.loads(raw)
    return record


def texts_of(answerer: LiveAnswerer) -> str:
    return "\n".join(chunk.text for chunk in answerer.retriever.index.chunks)


def test_scheduled_reindex_pulls_the_docs_and_serves_them(
    checkout: tuple[Path, Path], bot_parts: tuple[Settings, LiveAnswerer, RoomStore]
) -> None:
    upstream, clone = checkout
    settings, answerer, store = bot_parts
    first = answerer.version
    assert "zebrafish" not in texts_of(answerer)
    with (upstream / PAGE).open("a") as page:
        page.write(NEW_SECTION)
    git("commit", "--quiet", "-am", "docs: sharded checkpoints", cwd=upstream)

    record = run_until_first_build(settings, answerer, store)

    assert record["trigger"] == "scheduled" and record["ok"] is True, record
    assert record["published"] is True
    assert git("rev-parse", "HEAD", cwd=clone) == git("rev-parse", "HEAD", cwd=upstream)
    assert record["version"] == answerer.version != first
    assert current_version(settings.index_root) == answerer.version
    assert "zebrafish" in texts_of(answerer)  # the pulled text is what the bot now serves
    top = answerer("how do I write a zebrafish-sized model as shard files?").sources[0]
    assert top.url == "https://keras.io/guides/saving_models/"


def test_failed_pull_keeps_the_old_index_and_the_schedule(
    checkout: tuple[Path, Path],
    bot_parts: tuple[Settings, LiveAnswerer, RoomStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream, clone = checkout
    settings, answerer, store = bot_parts
    first = answerer.version
    before = git("rev-parse", "HEAD", cwd=clone)
    shutil.rmtree(upstream)  # the remote is gone: `git pull` fails

    def scheduled() -> int:
        return sum(r.getMessage().startswith("next scheduled re-index at") for r in caplog.records)

    with caplog.at_level(logging.INFO, logger="bot.room.index_jobs"):
        # The loop goes on after the failure: it schedules the next run.
        record = run_until_first_build(settings, answerer, store, lambda: scheduled() >= 2)

    assert record["trigger"] == "scheduled" and record["ok"] is False, record
    assert record["error"].startswith("BuildError: git pull in ")
    assert str(clone) in record["error"]
    assert answerer.version == first == current_version(settings.index_root)
    assert git("rev-parse", "HEAD", cwd=clone) == before
    assert any(
        "scheduled re-index failed; still serving the previous index" in r.getMessage()
        for r in caplog.records
    )
