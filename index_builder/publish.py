"""Write an index version and make it current atomically.

A version is assembled in ``indexes/.staging-<version>`` and renamed into place only when every
file is written and flushed; then ``CURRENT`` is replaced (write temp file, fsync, rename). A
crash at any point leaves the previous ``CURRENT`` pointing at a complete folder; leftover
staging folders are removed by the next build.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.corpus.documents import Chunk, Document
from bot.retrieval.index import (
    CHUNKS,
    CURRENT_POINTER,
    DENSE,
    DOCUMENTS,
    LEXICAL,
    MANIFEST,
    current_version,
)
from bot.retrieval.text import lexical_tokens

STAGING_PREFIX = ".staging-"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Some filesystems refuse fsync on directories; the rename is still ordered after the data.
    with contextlib.suppress(OSError):
        _fsync_file(path)


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")


def build_dense_index(vectors: np.ndarray, *, approximate_above: int) -> tuple[Any, str]:
    """Exact inner-product search by default; HNSW once the corpus is big enough to need it."""
    import faiss

    dim = int(vectors.shape[1])
    index: Any
    if vectors.shape[0] > approximate_above:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
        kind = "hnsw32"
    else:
        index = faiss.IndexFlatIP(dim)
        kind = "flat-ip"
    if vectors.shape[0]:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index, kind


def build_lexical_index(chunks: Sequence[Chunk]) -> Any:
    import bm25s

    retriever = bm25s.BM25()
    corpus = [lexical_tokens(c.text) or ["__empty__"] for c in chunks]
    retriever.index(corpus, show_progress=False)
    return retriever


def write_version(
    index_root: Path,
    version: str,
    *,
    documents: Sequence[Document],
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    manifest: dict[str, Any],
    approximate_above: int,
) -> Path:
    """Write a complete version folder (not yet current) and return its final path."""
    import faiss

    index_root.mkdir(parents=True, exist_ok=True)
    staging = index_root / f"{STAGING_PREFIX}{version}"
    final = index_root / version
    if final.exists():
        raise FileExistsError(f"index version {version} already exists")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()

    row_of = {d.doc_id: i for i, d in enumerate(documents)}
    _write_jsonl(
        staging / DOCUMENTS,
        [
            {
                "doc_id": d.doc_id,
                "title": d.title,
                "url": d.url,
                "kind": d.kind,
                "source": d.source,
                "names": [d.doc_id, *d.aliases] if d.kind == "api" else [],
                "symbols": list(d.symbols),
                "meta": dict(d.meta),
            }
            for d in documents
        ],
    )
    _write_jsonl(
        staging / CHUNKS,
        [{"doc": row_of[c.doc_id], "section": c.section, "text": c.text} for c in chunks],
    )
    dense, dense_kind = build_dense_index(vectors, approximate_above=approximate_above)
    faiss.write_index(dense, str(staging / DENSE))
    build_lexical_index(chunks).save(str(staging / LEXICAL))

    full_manifest = {
        **manifest,
        "version": version,
        "dense_index": dense_kind,
        "documents": len(documents),
        "chunks": len(chunks),
        "dim": int(vectors.shape[1]) if vectors.size else int(manifest.get("dim", 0)),
    }
    # The manifest goes last: a folder with a manifest is a folder whose parts are all written.
    (staging / MANIFEST).write_text(json.dumps(full_manifest, indent=2), encoding="utf-8")
    for path in staging.rglob("*"):
        if path.is_file():
            _fsync_file(path)
    os.replace(staging, final)
    _fsync_dir(index_root)
    return final


def set_current(index_root: Path, version: str) -> None:
    """Point CURRENT at ``version`` atomically (readers see the old or the new name, never half)."""
    if not (index_root / version / MANIFEST).is_file():
        raise FileNotFoundError(f"refusing to publish incomplete version {version}")
    tmp = index_root / f".{CURRENT_POINTER}.tmp"
    tmp.write_text(version + "\n", encoding="utf-8")
    _fsync_file(tmp)
    os.replace(tmp, index_root / CURRENT_POINTER)
    _fsync_dir(index_root)


def prune_versions(index_root: Path, keep: int) -> list[str]:
    """Remove leftover staging folders and all but the newest ``keep`` versions (never CURRENT)."""
    current = current_version(index_root)
    removed: list[str] = []
    if not index_root.is_dir():
        return removed
    for path in index_root.iterdir():
        if path.is_dir() and path.name.startswith(STAGING_PREFIX):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    versions = sorted(
        (p for p in index_root.iterdir() if p.is_dir() and (p / MANIFEST).is_file()),
        key=lambda p: p.name,
        reverse=True,
    )
    for path in versions[keep:]:
        if path.name != current:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed
