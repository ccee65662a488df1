"""Corpus tables and the embedding cache on SQLite and PostgreSQL (``database_url``)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from bot.corpus.documents import Chunk, Document
from bot.store.corpus_store import count_documents, replace_corpus
from bot.store.database import Database
from bot.store.embedding_cache import cached_embeddings, store_embeddings
from bot.store.models import ChunkRow, DocumentRow


def doc(doc_id: str, text: str = "body") -> Document:
    return Document(
        doc_id=doc_id,
        title=doc_id.title(),
        url=f"https://keras.io/{doc_id}/",
        source="keras-io",
        source_version="v1",
        text=text,
        kind="api" if doc_id.startswith("keras.") else "page",
        aliases=("keras.models.Model",) if doc_id == "keras.Model" else (),
    )


def chunks_of(d: Document, n: int = 2) -> list[Chunk]:
    return [Chunk(d.doc_id, i, d.title, f"{d.title} > part {i}\n\n{d.text}") for i in range(n)]


def make_db(url: str) -> Database:
    db = Database(url)  # a SQLite file's parent folder is created
    db.create_schema()
    return db


def test_replace_corpus_adds_updates_and_removes(database_url: str) -> None:
    db = make_db(database_url)
    a, b = doc("guides/a"), doc("keras.Model")
    replace_corpus(db, [a, b], chunks_of(a) + chunks_of(b, 3))
    assert count_documents(db) == 2
    with db.session() as s:
        row = s.get(DocumentRow, "keras.Model")
        assert row is not None and row.aliases == ["keras.models.Model"] and row.kind == "api"
        assert row.content_hash == b.content_hash
        assert [c.ordinal for c in row.chunks] == [0, 1, 2]

    a2, c = doc("guides/a", "new body"), doc("guides/c")
    replace_corpus(db, [a2, c], chunks_of(a2, 1) + chunks_of(c))
    with db.session() as s:
        ids = sorted(s.scalars(select(DocumentRow.doc_id)))
        assert ids == ["guides/a", "guides/c"]  # keras.Model is gone with its chunks
        texts = sorted(s.scalars(select(ChunkRow.text).where(ChunkRow.doc_id == "guides/a")))
        assert len(texts) == 1 and texts[0].endswith("new body")
        assert not s.scalars(select(ChunkRow).where(ChunkRow.doc_id == "keras.Model")).all()
    db.close()


def test_embedding_cache_is_keyed_by_model_and_hash(database_url: str) -> None:
    db = make_db(database_url)
    rng = np.random.default_rng(0)
    vectors = {f"h{i}": rng.standard_normal(8).astype(np.float32) for i in range(700)}
    store_embeddings(db, "model-a", vectors)
    found = cached_embeddings(db, "model-a", [*vectors, "missing"])  # > one IN batch
    assert set(found) == set(vectors)
    for key, vec in vectors.items():
        np.testing.assert_array_equal(found[key], vec)
    assert cached_embeddings(db, "model-b", vectors) == {}
    store_embeddings(db, "model-a", {"h0": np.ones(8, dtype=np.float32)})  # overwrite is fine
    np.testing.assert_array_equal(cached_embeddings(db, "model-a", ["h0"])["h0"], np.ones(8))
    db.close()
