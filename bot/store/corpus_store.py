"""The indexed corpus in the database: a build's documents and chunks replace the stored ones."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bot.corpus.documents import Chunk, Document
from bot.store.database import Database
from bot.store.models import ChunkRow, DocumentRow

# SQLite caps bound parameters per statement; keep IN (...) lists well below it.
_IN_BATCH = 500


def replace_corpus(db: Database, documents: Sequence[Document], chunks: Sequence[Chunk]) -> None:
    """Make the stored corpus equal to this build's documents and chunks, in one transaction."""
    by_doc: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_doc.setdefault(chunk.doc_id, []).append(chunk)
    with db.session() as s:
        existing = {
            row.doc_id: row.content_hash
            for row in s.execute(select(DocumentRow.doc_id, DocumentRow.content_hash))
        }
        keep = {d.doc_id for d in documents}
        _delete_documents(s, [doc_id for doc_id in existing if doc_id not in keep])
        for doc in documents:
            if existing.get(doc.doc_id) == doc.content_hash:
                continue  # unchanged: leave its rows (and updated_at) alone
            if doc.doc_id in existing:
                s.execute(delete(ChunkRow).where(ChunkRow.doc_id == doc.doc_id))
            _write_document(s, doc, by_doc.get(doc.doc_id, []))


def count_documents(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(DocumentRow)) or 0)


def _delete_documents(s: Session, doc_ids: list[str]) -> None:
    for start in range(0, len(doc_ids), _IN_BATCH):
        batch = doc_ids[start : start + _IN_BATCH]
        s.execute(delete(ChunkRow).where(ChunkRow.doc_id.in_(batch)))
        s.execute(delete(DocumentRow).where(DocumentRow.doc_id.in_(batch)))


def _write_document(s: Session, doc: Document, chunks: Sequence[Chunk]) -> None:
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
        ChunkRow(doc_id=c.doc_id, ordinal=c.ordinal, section=c.section, text=c.text, hash=c.hash)
        for c in chunks
    )
