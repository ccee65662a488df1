"""The answering side of the running bot: retrieval + reply text, with a swappable index."""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bot.answering.reply import SuggestedReply, compose_reply
from bot.errors import BuildError
from bot.retrieval.index import current_version, load_index, read_manifest
from bot.retrieval.search import Retriever
from bot.settings import Settings

log = logging.getLogger(__name__)


class LiveAnswerer:
    """Callable ``question -> SuggestedReply`` whose index can be swapped while it serves.

    A query reads ``self.retriever`` once, so it runs entirely on the old or on the new index;
    the swap is a single reference assignment, made only after the new version is fully
    loaded. Builds are serialised by a lock; queries never wait for it.
    """

    def __init__(self, settings: Settings, retriever: Retriever) -> None:
        self.settings = settings
        self.retriever = retriever
        self._build_lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.retriever.index.version

    def __call__(self, text: str) -> SuggestedReply:
        retriever = self.retriever
        result = retriever.search(text, k=10)
        return compose_reply(
            result,
            threshold=self.settings.reply_threshold,
            max_sources=self.settings.max_sources,
            index_version=retriever.index.version,
            chunks=retriever.index.chunk_texts,
        )

    def manifest(self) -> dict[str, Any]:
        """The served index's manifest (a copy; read at each call, across hot swaps)."""
        return dict(self.retriever.index.manifest)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` with the served index's encoder (a swap keeps the encoder)."""
        return self.retriever.encoder.encode(texts)

    def reload(self) -> str | None:
        """Serve the published CURRENT version if it is not the one in use (built elsewhere)."""
        version = current_version(self.settings.index_root)
        if version is None or version == self.version:
            return None
        index = load_index(self.settings.index_root, version)
        self.retriever = self.retriever.with_index(index)
        log.info("now serving index %s (%d documents)", version, len(index.docs))
        return version

    def republish(self, *, refresh_docs: bool = False) -> str | None:
        """Rebuild from the current index's inputs plus the database; serve it if it changed.

        ``refresh_docs``: pull a ``--docs-git`` checkout first (the nightly re-index).
        """
        from index_builder.build import rebuild_current

        with self._build_lock:
            report = rebuild_current(
                self.settings, encoder=self.retriever.encoder, refresh_docs=refresh_docs
            )
            if not report.published:
                return None
            self.reload()
            return report.version

    def scheduled_rebuild(self) -> str | None:
        """The nightly job: refresh the docs checkout, then rebuild and swap.

        A ``--docs-git`` checkout is always pulled (by the build); a docs folder of the
        operator's only with ``SUPPORTBOT_DOCS_GIT_PULL``.
        """
        if self.settings.docs_git_pull:
            self._git_pull()
        return self.republish(refresh_docs=True)

    def _git_pull(self) -> None:
        version = current_version(self.settings.index_root)
        inputs = (
            read_manifest(self.settings.index_root / version).get("build_inputs", {})
            if (version)
            else {}
        )
        docs = inputs.get("docs_dir") or (
            str(self.settings.docs_dir) if self.settings.docs_dir else None
        )
        if inputs.get("docs_git") or not docs or not (Path(docs) / ".git").exists():
            return  # no checkout, or the build pulls its own --docs-git checkout
        try:
            subprocess.run(
                ["git", "-C", docs, "pull", "--ff-only", "--quiet"],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or exc
            raise BuildError(f"git pull in {docs} failed: {detail}") from exc
