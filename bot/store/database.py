"""Engine/session setup and the corpus queries used by the index builder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, create_engine, delete, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.errors import TransientError
from bot.store.models import Base, ChunkRow, DocumentRow, EmbeddingCacheRow
from index_builder.documents import Chunk, Document

# SQLite caps bound parameters per statement; keep IN (...) lists well below it.
_IN_BATCH = 500


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    # WAL lets the dashboard read while a build writes; busy_timeout rides out short locks.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    """Owns the engine; hands out short-lived sessions."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise TransientError(f"database error: {exc.orig}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()

    # --- corpus ------------------------------------------------------------------------------
    def replace_corpus(self, documents: Sequence[Document], chunks: Sequence[Chunk]) -> None:
        """Make the stored corpus equal to this build's documents and chunks, in one transaction."""
        by_doc: dict[str, list[Chunk]] = {}
        for chunk in chunks:
            by_doc.setdefault(chunk.doc_id, []).append(chunk)
        with self.session() as s:
            existing = {
                row.doc_id: row.content_hash
                for row in s.execute(select(DocumentRow.doc_id, DocumentRow.content_hash))
            }
            keep = {d.doc_id for d in documents}
            stale = [doc_id for doc_id in existing if doc_id not in keep]
            for start in range(0, len(stale), _IN_BATCH):
                batch = stale[start : start + _IN_BATCH]
                s.execute(delete(ChunkRow).where(ChunkRow.doc_id.in_(batch)))
                s.execute(delete(DocumentRow).where(DocumentRow.doc_id.in_(batch)))
            for doc in documents:
                if existing.get(doc.doc_id) == doc.content_hash:
                    continue  # unchanged: leave its rows (and updated_at) alone
                if doc.doc_id in existing:
                    s.execute(delete(ChunkRow).where(ChunkRow.doc_id == doc.doc_id))
                s.merge(
                    DocumentRow(
                        doc_id=doc.doc_id,
                        title=doc.title,
                        url=doc.url,
                        source=doc.source,
                        source_version=doc.source_version,
                        kind=doc.kind,
                        aliases=list(doc.aliases),
                        content_hash=doc.content_hash,
                    )
                )
                s.add_all(
                    ChunkRow(
                        doc_id=c.doc_id,
                        ordinal=c.ordinal,
                        section=c.section,
                        text=c.text,
                        hash=c.hash,
                    )
                    for c in by_doc.get(doc.doc_id, [])
                )

    def count_documents(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(DocumentRow)) or 0)

    # --- embedding cache -----------------------------------------------------------------------
    def cached_embeddings(self, model: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        with self.session() as s:
            for start in range(0, len(wanted), _IN_BATCH):
                batch = wanted[start : start + _IN_BATCH]
                rows = s.execute(
                    select(EmbeddingCacheRow.chunk_hash, EmbeddingCacheRow.vector).where(
                        EmbeddingCacheRow.model == model, EmbeddingCacheRow.chunk_hash.in_(batch)
                    )
                )
                for chunk_hash, blob in rows:
                    found[chunk_hash] = np.frombuffer(blob, dtype=np.float32)
        return found

    def store_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        with self.session() as s:
            for chunk_hash, vec in vectors.items():
                arr = np.ascontiguousarray(vec, dtype=np.float32)
                s.merge(
                    EmbeddingCacheRow(
                        model=model,
                        chunk_hash=chunk_hash,
                        dim=int(arr.shape[0]),
                        vector=arr.tobytes(),
                    )
                )
