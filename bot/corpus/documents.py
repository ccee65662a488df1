"""The units that flow through the index builder: documents from sources, chunks for the index.

Every source yields :class:`Document` objects with stable ids (the eval's doc-id scheme:
``keras.layers.LSTM``, ``keras.Model.fit``, ``guides/transfer_learning``); the chunker turns
each into :class:`Chunk` objects, the unit that is embedded and searched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def content_hash(*parts: str) -> str:
    """Stable sha256 (hex) of text parts: change detection and the embedding cache key."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


@dataclass(frozen=True)
class Document:
    """One citable page: an API symbol's reference or a keras.io page.

    ``kind`` is ``"api"`` for a symbol reference and ``"page"`` for a prose page.
    ``symbols`` lists the public API names this document is *the reference for*
    (its id and aliases for an API doc; the symbols an API overview page documents).
    ``text`` is Markdown; headings in it drive chunking.
    """

    doc_id: str
    title: str
    url: str
    source: str
    source_version: str
    text: str
    kind: str = "page"
    aliases: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    # Small display facts for the reply (e.g. who answered a past thread); not searched.
    meta: tuple[tuple[str, str], ...] = ()

    @property
    def content_hash(self) -> str:
        return content_hash(self.doc_id, self.title, self.url, self.text)


@dataclass(frozen=True)
class Chunk:
    """A searchable piece of a document: one section (or window of a long section).

    ``text`` is what gets embedded and lexically indexed; it starts with the page title
    and section path so a chunk is understandable on its own.
    """

    doc_id: str
    ordinal: int
    section: str
    text: str
    hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", content_hash(self.text))
