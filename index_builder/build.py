"""sources → documents → chunks → embeddings → published index (one build)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bot.corpus.documents import Chunk, Document, content_hash
from bot.errors import BuildError, ConfigError, SupportBotError
from bot.retrieval.encoder import Encoder
from bot.retrieval.index import FORMAT_VERSION, current_version, read_manifest
from bot.retrieval.rerank import Reranker
from bot.settings import Settings
from bot.store.corpus_store import replace_corpus
from bot.store.database import Database
from index_builder.chunking import chunk_documents
from index_builder.collect import collect_documents
from index_builder.confidence_training import CONFIDENCE_VERSION, attach_confidence
from index_builder.embedding import EmbedStats, embed_chunks
from index_builder.publish import prune_versions, set_current, write_version
from index_builder.reranker_training import TRAINING_VERSION
from index_builder.sources.docs_git import redact_url, sync_docs_checkout

log = logging.getLogger(__name__)

# (phase name, total or None) -> advance(n) callback; lets the CLI draw progress bars.
ProgressFactory = Callable[[str, int | None], Callable[[int], None]]


def _no_progress(_name: str, _total: int | None) -> Callable[[int], None]:
    return lambda _n: None


@dataclass
class BuildReport:
    version: str
    published: bool  # False when nothing changed since the current version
    documents: int
    chunks: int
    embedded: int
    cached: int
    seconds: float
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None
    pruned: list[str] = field(default_factory=list)
    reranker: dict[str, Any] | None = None  # how the version's reranker was learnt (its info)
    confidence: dict[str, Any] | None = None  # how its confidence was learnt (or why not)


def build_inputs(settings: Settings) -> dict[str, Any]:
    """The settings that decide a build's corpus, kept in its manifest (see ``rebuild_current``)."""
    return {
        # Without credentials: the manifest is printed by `index status --json`.
        "docs_git": redact_url(settings.docs_git) if settings.docs_git else None,
        "docs_dir": str(settings.docs_dir) if settings.docs_dir else None,
        "site_map": str(settings.site_map) if settings.site_map else None,
        "include_keras_api": settings.include_keras_api,
        "api_package": settings.api_package,
        "include_past_answers": settings.include_past_answers,
    }


def rebuild_current(
    settings: Settings, *, encoder: Encoder | None = None, refresh_docs: bool = False
) -> BuildReport:
    """Build again from the inputs of the current index (plus what the database learnt since).

    The running bot uses this to make new past answers searchable quickly: it must not drop a
    docs folder that the operator passed on the command line of the original build.
    ``refresh_docs`` (the nightly re-index) also pulls a ``--docs-git`` checkout first.
    """
    current = current_version(settings.index_root)
    inputs: dict[str, Any] = {}
    if current:
        inputs = dict(read_manifest(settings.index_root / current).get("build_inputs") or {})
    for key in ("docs_dir", "site_map"):
        if inputs.get(key):
            inputs[key] = Path(inputs[key])
        inputs.setdefault("docs_git", None)  # a manifest from before --docs-git existed
    recorded_git = inputs.get("docs_git")
    if recorded_git and settings.docs_git and redact_url(settings.docs_git) == recorded_git:
        inputs["docs_git"] = settings.docs_git  # the same repository, with its credentials
    if recorded_git:
        inputs["docs_dir"] = None  # the checkout's folder follows from the URL and data dir
    return build_index(
        settings.model_copy(update=inputs), encoder=encoder, refresh_docs=refresh_docs
    )


def resolve_docs(settings: Settings, *, refresh: bool) -> Settings:
    """``settings`` with ``docs_dir`` pointing at the ``--docs-git`` checkout, synced first.

    ``refresh``: pull when the checkout exists (``index build``, the nightly re-index); the
    quick re-publish after new past answers only clones a missing checkout.
    """
    if not settings.docs_git:
        return settings
    if settings.docs_dir is not None:
        raise ConfigError(
            "give either a docs folder (--docs-dir / SUPPORTBOT_DOCS_DIR) or a repository to "
            "fetch (--docs-git / SUPPORTBOT_DOCS_GIT), not both"
        )
    checkout = sync_docs_checkout(settings.docs_git, settings.data_dir, update=refresh)
    return settings.model_copy(update={"docs_dir": checkout})


def attach_reranker(
    index_root: Path,
    version: str,
    previous: str | None,
    documents: list[Document],
    get_encoder: Callable[[], Encoder],
    *,
    seed: int = 0,
) -> Reranker | None:
    """Give a new (not yet current) version its second stage: reuse or learn one.

    The reranker depends only on the non-thread documents and the model, so when the
    previous version's was learnt from the same ones (a quick re-publish after new past
    answers) it is copied instead of learnt again, which keeps those re-publishes quick.
    """
    from bot.retrieval.index import load_index
    from bot.retrieval.rerank import load_reranker
    from index_builder.reranker_training import corpus_key, train_reranker

    index = load_index(index_root, version)
    key = corpus_key(documents, index.model)
    if previous:
        try:
            old = load_reranker(index_root / previous)
        except SupportBotError:
            old = None
        if old is not None and dict(old.info).get("corpus") == key:
            old.save(index_root / version)
            return old
    started = time.perf_counter()
    reranker = train_reranker(index, documents, get_encoder(), seed=seed)
    if reranker is None:
        log.info("corpus too small to learn a reranker from: first-stage ranking only")
        return None
    reranker.save(index_root / version)
    info = dict(reranker.info)
    log.info(
        "reranker learnt from %s queries in %.1f s; held-out MRR@10 %.3f -> %.3f",
        info.get("queries"),
        time.perf_counter() - started,
        info.get("held_out_mrr_first_stage", 0.0),
        info.get("held_out_mrr_reranked", 0.0),
    )
    return reranker


def build_index(
    settings: Settings,
    *,
    encoder: Encoder | None = None,
    progress: ProgressFactory = _no_progress,
    force: bool = False,
    refresh_docs: bool = True,
) -> BuildReport:
    """Run one build; publish it unless it is identical to the current version.

    With ``settings.docs_git``, the docs checkout is cloned first, or pulled when it exists
    and ``refresh_docs`` is set.
    """
    started = time.perf_counter()
    reranker: Reranker | None = None
    confidence: dict[str, Any] | None = None
    index_root = settings.index_root
    try:
        settings = resolve_docs(settings, refresh=refresh_docs)
        corpus = _prepare_corpus(settings, progress)
        current = current_version(index_root)
        if current and not force and _is_current(index_root / current, corpus.fingerprint):
            return _unchanged_report(corpus, index_root, current, started)
        get_encoder = _lazy_encoder(settings, encoder)
        vectors, stats = _store_and_embed(settings, corpus, get_encoder, progress)
        version, path = _write_new_version(settings, corpus, vectors, stats, progress, started)
        progress("rerank", None)(0)
        reranker = attach_reranker(
            index_root, version, current, corpus.documents, get_encoder, seed=settings.rerank_seed
        )
        confidence = attach_confidence(
            index_root,
            version,
            current,
            reranker,
            corpus.documents,
            get_encoder,
            seed=settings.rerank_seed,
        )
        set_current(index_root, version)
        pruned = prune_versions(index_root, settings.keep_index_versions)
    except SupportBotError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise BuildError(f"index build failed: {exc}") from exc
    return BuildReport(
        version=version,
        published=True,
        documents=len(corpus.documents),
        chunks=len(corpus.chunks),
        embedded=stats.embedded,
        cached=stats.cached,
        seconds=time.perf_counter() - started,
        sources=corpus.sources,
        path=path,
        pruned=pruned,
        reranker=dict(reranker.info) if reranker else None,
        confidence=confidence,
    )


@dataclass(frozen=True)
class _Corpus:
    """A build's documents and chunks, and the fingerprint that says whether it is new."""

    documents: list[Document]  # sorted by id
    sources: dict[str, dict[str, Any]]
    chunks: list[Chunk]
    fingerprint: str


def _prepare_corpus(settings: Settings, progress: ProgressFactory) -> _Corpus:
    """Collect, sort and chunk the documents (one progress step per document)."""
    documents, sources = collect_documents(settings)
    documents.sort(key=lambda d: d.doc_id)
    chunk_progress = progress("chunk", len(documents))
    chunks: list[Chunk] = []
    for doc in documents:
        chunks.extend(
            chunk_documents(
                [doc],
                max_words=settings.chunk_max_words,
                overlap_words=settings.chunk_overlap_words,
            )
        )
        chunk_progress(1)
    return _Corpus(documents, sources, chunks, _fingerprint(settings, documents, chunks))


def _fingerprint(settings: Settings, documents: list[Document], chunks: list[Chunk]) -> str:
    """Equal for two builds that would publish the same index."""
    return content_hash(
        str(FORMAT_VERSION),
        # An index from before the reranker (or an older training) is built again, so an
        # upgrade gets the second stage although the corpus did not change.
        f"reranker-{TRAINING_VERSION}",
        f"confidence-{CONFIDENCE_VERSION}",
        settings.embedding_model,
        *(d.content_hash for d in documents),
        *(c.hash for c in chunks),
    )


def _is_current(version_dir: Path, fingerprint: str) -> bool:
    """Whether the published version was built from this fingerprint."""
    try:
        return bool(read_manifest(version_dir).get("fingerprint") == fingerprint)
    except SupportBotError:
        return False  # unreadable current index: build a fresh one


def _unchanged_report(
    corpus: _Corpus, index_root: Path, current: str, started: float
) -> BuildReport:
    """The report of a build that publishes nothing: the current version already has it all."""
    return BuildReport(
        version=current,
        published=False,
        documents=len(corpus.documents),
        chunks=len(corpus.chunks),
        embedded=0,
        cached=len(corpus.chunks),
        seconds=time.perf_counter() - started,
        sources=corpus.sources,
        path=index_root / current,
    )


def _lazy_encoder(settings: Settings, encoder: Encoder | None) -> Callable[[], Encoder]:
    """``encoder``, or one loaded on first use: only if something needs embedding."""
    encoders: list[Encoder] = [encoder] if encoder else []

    def get_encoder() -> Encoder:
        if not encoders:
            encoders.append(
                Encoder(
                    settings.embedding_model,
                    device=settings.device,
                    batch_size=settings.embed_batch_size,
                )
            )
        return encoders[0]

    return get_encoder


def _store_and_embed(
    settings: Settings,
    corpus: _Corpus,
    get_encoder: Callable[[], Encoder],
    progress: ProgressFactory,
) -> tuple[np.ndarray, EmbedStats]:
    """Store the corpus in the database and embed its chunks (cached vectors reused)."""
    db = Database(settings.resolved_database_url)
    try:
        db.create_schema()
        replace_corpus(db, corpus.documents, corpus.chunks)
        embed_progress = progress("embed", len(corpus.chunks))
        return embed_chunks(
            corpus.chunks,
            db=db,
            model_name=settings.embedding_model,
            encoder_factory=get_encoder,
            on_progress=embed_progress,
        )
    finally:
        db.close()


def _write_new_version(
    settings: Settings,
    corpus: _Corpus,
    vectors: np.ndarray,
    stats: EmbedStats,
    progress: ProgressFactory,
    started: float,
) -> tuple[str, Path]:
    """Write the corpus as a new version folder (not yet current): its name and path."""
    index_root = settings.index_root
    now = datetime.now(UTC)
    version = _new_version_name(index_root, corpus.fingerprint, now)
    progress("publish", None)(0)
    path = write_version(
        index_root,
        version,
        documents=corpus.documents,
        chunks=corpus.chunks,
        vectors=vectors,
        approximate_above=settings.approximate_index_above,
        manifest=_manifest(settings, corpus, now, stats.embedded, started),
    )
    return version, path


def _new_version_name(index_root: Path, fingerprint: str, now: datetime) -> str:
    """A version folder name not yet taken under ``index_root``."""
    version = f"{now:%Y%m%dT%H%M%S}-{fingerprint[:8]}"
    n = 1
    while (index_root / version).exists():  # same corpus published twice in one second
        n += 1
        version = f"{now:%Y%m%dT%H%M%S}-{fingerprint[:8]}-{n}"
    return version


def _manifest(
    settings: Settings, corpus: _Corpus, now: datetime, embedded: int, started: float
) -> dict[str, Any]:
    """The new version's manifest.json content."""
    return {
        "format": FORMAT_VERSION,
        "model": settings.embedding_model,
        "built_at": now.isoformat(),
        "fingerprint": corpus.fingerprint,
        "sources": corpus.sources,
        "build_inputs": build_inputs(settings),
        "chunking": {
            "max_words": settings.chunk_max_words,
            "overlap_words": settings.chunk_overlap_words,
        },
        "embedded": embedded,
        "build_seconds": round(time.perf_counter() - started, 3),
    }
