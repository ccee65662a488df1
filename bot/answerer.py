"""The answering side of the running bot: retrieval + reply text, with a swappable index."""

from __future__ import annotations

import logging
import threading

from bot.answering.reply import SuggestedReply, compose_reply
from bot.retrieval.index import load_index
from bot.retrieval.search import Retriever
from bot.settings import Settings

log = logging.getLogger(__name__)


class LiveAnswerer:
    """Callable ``question -> SuggestedReply``; :meth:`republish` swaps in a fresh index.

    A query reads ``self.retriever`` once, so it runs entirely on the old or the new index;
    the swap is a single reference assignment.
    """

    def __init__(self, settings: Settings, retriever: Retriever) -> None:
        self.settings = settings
        self.retriever = retriever
        self._publish_lock = threading.Lock()

    def __call__(self, text: str) -> SuggestedReply:
        retriever = self.retriever
        result = retriever.search(text, k=10)
        return compose_reply(
            result,
            threshold=self.settings.reply_threshold,
            max_sources=self.settings.max_sources,
            index_version=retriever.index.version,
        )

    def republish(self) -> str | None:
        """Rebuild from the current index's inputs plus the database; load it if it changed."""
        from index_builder.build import rebuild_current

        with self._publish_lock:
            report = rebuild_current(self.settings, encoder=self.retriever.encoder)
            if not report.published:
                return None
            self.retriever = self.retriever.with_index(load_index(self.settings.index_root))
            log.info(
                "now serving index %s (%d documents, %d newly embedded)",
                report.version,
                report.documents,
                report.embedded,
            )
            return report.version
