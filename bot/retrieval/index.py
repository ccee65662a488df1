"""A published index on disk, and loading it for search.

Layout of ``<data_dir>/indexes``::

    CURRENT                 name of the live version (replaced atomically)
    <version>/manifest.json model, dimension, counts, sources and their versions, build time
    <version>/documents.jsonl   one object per document (id, title, url, kind, names, ...)
    <version>/chunks.jsonl      one object per chunk (document row, section, text)
    <version>/dense.faiss       FAISS inner-product index over normalised chunk vectors
    <version>/lexical/          bm25s index over the same chunks, same order
    <version>/reranker.json     the learnt second stage (optional; see bot.retrieval.rerank)
    <version>/confidence.json   its learnt confidence (optional; see bot.retrieval.confidence)

Readers only ever open a complete folder: writers build elsewhere and rename it into place
before pointing ``CURRENT`` at it (see ``index_builder.publish``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.errors import IndexCorruptError, IndexNotFoundError
from bot.retrieval.confidence import ConfidenceModel, load_index_confidence
from bot.retrieval.rerank import Reranker, load_reranker
from bot.retrieval.symbols import SymbolTable

FORMAT_VERSION = 1
CURRENT_POINTER = "CURRENT"
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
CHUNKS = "chunks.jsonl"
DENSE = "dense.faiss"
LEXICAL = "lexical"


@dataclass(frozen=True)
class DocInfo:
    doc_id: str
    title: str
    url: str
    kind: str
    source: str
    names: tuple[str, ...] = ()  # public API names (id + aliases) for API documents
    symbols: tuple[str, ...] = ()  # symbols an overview page documents
    meta: tuple[tuple[str, str], ...] = ()  # display facts (who answered a past thread, ...)

    def get(self, key: str) -> str | None:
        return dict(self.meta).get(key)


@dataclass(frozen=True)
class ChunkInfo:
    doc: int  # row in LoadedIndex.docs
    section: str
    text: str


@dataclass
class LoadedIndex:
    """Everything search needs, in memory. Immutable once loaded; swap, don't mutate."""

    path: Path
    manifest: dict[str, Any]
    docs: list[DocInfo]
    chunks: list[ChunkInfo]
    chunk_doc: np.ndarray  # int32 [n_chunks]: chunk row -> doc row
    dense: Any  # faiss.Index
    lexical: Any  # bm25s.BM25
    symbols: SymbolTable
    doc_rows: dict[str, int] = field(default_factory=dict)
    first_chunk: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    reranker: Reranker | None = None  # the second stage learnt at build time, if any
    confidence: ConfidenceModel | None = None  # learnt with that reranker (confidence.py)
    # Derived once, on first use (a benign race: two threads compute the same value).
    _vectors: np.ndarray | None = field(default=None, repr=False, compare=False)
    _doc_chunk_rows: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    _title_terms: dict[int, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    def chunk_vectors(self) -> np.ndarray:
        """The normalised chunk vectors ``[n_chunks, dim]``, read back from FAISS once."""
        if self._vectors is None:
            n = int(self.dense.ntotal)
            self._vectors = (
                np.asarray(self.dense.reconstruct_n(0, n), dtype=np.float32)
                if n
                else np.zeros((0, int(self.dense.d)), dtype=np.float32)
            )
        return self._vectors

    def doc_chunks(self, doc: int) -> np.ndarray:
        """Chunk rows of document row ``doc``, in chunk order."""
        if self._doc_chunk_rows is None:
            order = np.argsort(self.chunk_doc, kind="stable")
            starts = np.searchsorted(self.chunk_doc[order], np.arange(len(self.docs) + 1))
            self._doc_chunk_rows = (order, starts)
        order, starts = self._doc_chunk_rows
        return order[starts[doc] : starts[doc + 1]]

    def title_terms(self, doc: int) -> frozenset[str]:
        terms = self._title_terms.get(doc)
        if terms is None:
            from bot.retrieval.text import lexical_tokens

            terms = frozenset(lexical_tokens(self.docs[doc].title))
            self._title_terms[doc] = terms
        return terms

    def chunk_texts(self, doc_id: str) -> list[str]:
        """The texts of a document's chunks in page order ([] for an unknown id), for what
        the reply shows from the page beyond the chunk search matched (its code example)."""
        row = self.doc_rows.get(doc_id)
        if row is None:
            return []
        return [self.chunks[int(i)].text for i in self.doc_chunks(row)]

    def canonical_id(self, name: str) -> str:
        """The id of the document known under ``name`` (an API alias maps to its document)."""
        if name in self.doc_rows:
            return name
        return self.symbols.by_full.get(name, name)


def current_version(index_root: Path) -> str | None:
    pointer = index_root / CURRENT_POINTER
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorruptError(f"{folder} has no {MANIFEST}") from None
    except json.JSONDecodeError as exc:
        raise IndexCorruptError(f"{folder / MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise IndexCorruptError(f"{folder / MANIFEST} is not a JSON object")
    if data.get("format") != FORMAT_VERSION:
        raise IndexCorruptError(
            f"{folder} has index format {data.get('format')!r}; this version reads "
            f"{FORMAT_VERSION}: rebuild with `supportbot index build`"
        )
    missing = [key for key in ("version", "model", "dim", "documents", "chunks") if key not in data]
    if missing:
        raise IndexCorruptError(f"{folder / MANIFEST} lacks {', '.join(missing)}")
    return dict(data)


def load_index(index_root: Path, version: str | None = None) -> LoadedIndex:
    """Load the given (default: current) version; raise if missing or inconsistent."""
    import bm25s
    import faiss

    version = version or current_version(index_root)
    if version is None:
        raise IndexNotFoundError(
            f"no published index under {index_root}: run `supportbot index build` first"
        )
    folder = index_root / version
    if not folder.is_dir():
        raise IndexNotFoundError(
            f"{index_root / CURRENT_POINTER} names {version}, which is missing"
        )
    manifest = read_manifest(folder)
    try:
        docs = [
            DocInfo(
                doc_id=d["doc_id"],
                title=d["title"],
                url=d["url"],
                kind=d["kind"],
                source=d["source"],
                names=tuple(d.get("names", ())),
                symbols=tuple(d.get("symbols", ())),
                meta=tuple(sorted((str(k), str(v)) for k, v in (d.get("meta") or {}).items())),
            )
            for d in _read_jsonl(folder / DOCUMENTS)
        ]
        chunks = [
            ChunkInfo(doc=int(c["doc"]), section=c["section"], text=c["text"])
            for c in _read_jsonl(folder / CHUNKS)
        ]
        dense = faiss.read_index(str(folder / DENSE))
        lexical = bm25s.BM25.load(str(folder / LEXICAL))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise IndexCorruptError(f"cannot read index {folder}: {exc}") from exc
    if any(not 0 <= c.doc < len(docs) for c in chunks):
        raise IndexCorruptError(f"index {folder}: a chunk points at a document that is not there")
    if not (
        len(docs) == manifest["documents"] and len(chunks) == manifest["chunks"] == dense.ntotal
    ):
        raise IndexCorruptError(
            f"index {folder} is inconsistent: manifest says {manifest['documents']} documents / "
            f"{manifest['chunks']} chunks, found {len(docs)} / {len(chunks)} / "
            f"{dense.ntotal} vectors"
        )
    lexical_docs = int(getattr(lexical, "scores", {}).get("num_docs", len(chunks)))
    if lexical_docs != len(chunks):
        raise IndexCorruptError(
            f"index {folder}: lexical index has {lexical_docs} entries for {len(chunks)} chunks"
        )
    if dense.d != manifest["dim"]:
        raise IndexCorruptError(
            f"index {folder}: vectors have dim {dense.d}, manifest {manifest['dim']}"
        )
    table = SymbolTable.build((d.doc_id, d.names) for d in docs if d.kind == "api")
    first_chunk = np.full(len(docs), -1, dtype=np.int64)
    for row in range(len(chunks) - 1, -1, -1):  # backwards, so the lowest row wins
        first_chunk[chunks[row].doc] = row
    return LoadedIndex(
        path=folder,
        manifest=manifest,
        docs=docs,
        chunks=chunks,
        chunk_doc=np.fromiter((c.doc for c in chunks), dtype=np.int32, count=len(chunks)),
        dense=dense,
        lexical=lexical,
        symbols=table,
        doc_rows={d.doc_id: i for i, d in enumerate(docs)},
        first_chunk=first_chunk,
        reranker=load_reranker(folder),
        confidence=load_index_confidence(folder),
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
