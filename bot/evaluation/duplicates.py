"""Past-answer retrieval quality on a duplicates file (``supportbot eval-duplicates``).

Each line of the file pairs a new question (``query``) with an earlier thread about the same
problem (``original_title`` / ``original_body`` / ``original_answer`` / ``original_url``). The
evaluation builds a *fresh* pool of past threads, never touching the live database or index:

* one past-answer thread per line, from its originals (key and url = ``original_url``);
* optionally, every question of a questions file (``questions-dev.jsonl`` style) as an
  *unanswered* thread (key ``distractor:<id>``, title = its first line, body = the rest),
  except the queries themselves (see :func:`pool_threads`). Several are the same problem asked
  by someone else, and some are another excerpt of an original's own thread, which is what
  makes the task hard: the original has to come first, not merely near the top.

The pool goes through the project's real pipeline (chunk → embed with the configured model →
``write_version`` → ``load_index``) in a temporary folder, with its own embedding cache, and each
query is asked of that pool alone.

Metrics (one relevant thread per query; the same conventions as :mod:`bot.evaluation.questions`):

* Recall@k — share of queries whose original is in the top k (success@k).
* MRR@10 — mean of 1/rank of the original within the top 10 (0 if it is not there).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bot.corpus.documents import Document, content_hash
from bot.corpus.past_answers import PastAnswer, to_document
from bot.errors import ConfigError
from bot.evaluation.questions import (
    first_hit_rank,
    load_questions,
    mean_reciprocal_rank,
    read_jsonl_objects,
    recall_at,
)
from bot.retrieval.encoder import Encoder
from bot.retrieval.index import FORMAT_VERSION, LoadedIndex, load_index
from bot.retrieval.search import MODES, Mode, Retriever, SearchParams
from index_builder.chunking import chunk_documents

DISTRACTOR_PREFIX = "distractor:"
POOL_SOURCE = "duplicates-eval"


@dataclass(frozen=True)
class DuplicatePair:
    id: str
    query: str
    original_title: str
    original_body: str
    original_answer: str
    original_url: str
    query_url: str = ""


@dataclass(frozen=True)
class Distractor:
    id: str
    question: str
    url: str = ""  # the question's own thread (``source_url``), when known


def load_duplicates(path: Path) -> list[DuplicatePair]:
    """Parse a duplicates JSONL file; a malformed line stops with its line number and reason."""
    out: list[DuplicatePair] = []
    for lineno, obj in read_jsonl_objects(path, "a duplicates object"):
        try:
            pair = DuplicatePair(
                id=str(obj.get("id", f"line-{lineno}")),
                query=str(obj["query"]),
                original_title=str(obj.get("original_title") or ""),
                original_body=str(obj.get("original_body") or ""),
                original_answer=str(obj.get("original_answer") or ""),
                original_url=str(obj["original_url"]),
                query_url=str(obj.get("query_url") or ""),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{lineno}: not a duplicates object ({exc})") from None
        if not pair.query.strip() or not pair.original_url.strip():
            raise ConfigError(f"{path}:{lineno}: empty query or original_url")
        if not (pair.original_title.strip() or pair.original_body.strip()):
            raise ConfigError(f"{path}:{lineno}: the original has neither a title nor a body")
        out.append(pair)
    return out


def load_distractors(path: Path) -> list[Distractor]:
    """Every question of a questions file (answerable from the docs or not), with its url."""
    questions = load_questions(path)  # validates the file, one clear line per bad line
    urls = {
        str(obj.get("id", f"line-{lineno}")): str(obj.get("source_url") or "")
        for lineno, obj in read_jsonl_objects(path, "a question object")
    }
    return [
        Distractor(q.id, q.question, urls.get(q.id, "")) for q in questions if q.question.strip()
    ]


# --- the pool ----------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _words(text: str) -> set[str]:
    return set(re.findall(r"[0-9a-z_]+", text.casefold()))


def same_question(a: str, b: str) -> bool:
    """Whether two texts are the same question, give or take trimming.

    Equal after normalising whitespace and case; or the same title line with mostly the same
    words (two excerpts of one issue, cut differently: "In some paper: '...'" vs "In some
    paper, I once saw the statement such as "..."").
    """
    if _norm(a) == _norm(b):
        return True
    title_a, title_b = split_title(a)[0], split_title(b)[0]
    if not title_a or _norm(title_a) != _norm(title_b):
        return False
    wa, wb = _words(a), _words(b)
    return len(wa & wb) >= 0.5 * len(wa | wb)


def split_title(text: str) -> tuple[str, str]:
    """(first non-empty line, the rest): a question written as "title, newline, body"."""
    lines = text.strip().splitlines()
    if not lines:
        return "", ""
    return lines[0].strip(), "\n".join(lines[1:]).strip()


def _thread(key: str, title: str, body: str, answer: str, url: str) -> PastAnswer:
    # A thread whose body is empty is asked by its title alone: use it as the question text,
    # so the document still has a question section (the chunker skips empty sections).
    return PastAnswer(
        key=key,
        question=body.strip() or title.strip(),
        answer=answer.strip(),
        url=url,
        title=title.strip() or None,
        source="import",
        established_by="duplicates-eval",
    )


def original_thread(pair: DuplicatePair) -> PastAnswer:
    return _thread(
        pair.original_url,
        pair.original_title,
        pair.original_body,
        pair.original_answer,
        pair.original_url,
    )


def distractor_thread(d: Distractor) -> PastAnswer:
    """An unanswered thread: title = the question's first line, body = the rest."""
    title, body = split_title(d.question)
    return _thread(f"{DISTRACTOR_PREFIX}{d.id}", title, body, "", d.url)


def pool_threads(
    pairs: Sequence[DuplicatePair], distractors: Sequence[Distractor] = ()
) -> list[PastAnswer]:
    """Originals (one per distinct url, first wins), then the distractors that are not a query.

    A distractor is one of the queries when it comes from the query's own thread (same url) or
    is textually the same question (:func:`same_question`): asking a question must not find
    the question itself.
    """
    threads: list[PastAnswer] = []
    seen: set[str] = set()
    for pair in pairs:
        if pair.original_url not in seen:
            seen.add(pair.original_url)
            threads.append(original_thread(pair))
    query_urls = {p.query_url for p in pairs if p.query_url}
    for d in distractors:
        thread = distractor_thread(d)
        if thread.key in seen or (d.url and d.url in query_urls):
            continue
        if any(same_question(d.question, p.query) for p in pairs):
            continue
        seen.add(thread.key)
        threads.append(thread)
    return threads


def pool_documents(threads: Sequence[PastAnswer]) -> list[Document]:
    """Index documents for the pool; unlike the live source, unanswered threads are kept.

    Sorted by id, as ``index build`` does: search breaks exact ties by document row, and the
    pool's own order (originals first) must not decide them in the originals' favour.
    """
    return sorted((to_document(t, version=POOL_SOURCE) for t in threads), key=lambda d: d.doc_id)


def build_pool_index(
    documents: Sequence[Document],
    encoder: Encoder,
    index_root: Path,
    *,
    chunk_max_words: int = 160,
    chunk_overlap_words: int = 30,
) -> LoadedIndex:
    """Chunk, embed, publish and load ``documents`` under ``index_root`` (a scratch folder).

    Its own embedding cache in ``index_root``: the live database is never opened.
    """
    from bot.store.database import Database
    from index_builder.embedding import embed_chunks
    from index_builder.publish import set_current, write_version

    chunks = chunk_documents(
        documents, max_words=chunk_max_words, overlap_words=chunk_overlap_words
    )
    if not chunks:
        raise ConfigError("the pool of past threads is empty")
    db = Database(f"sqlite:///{(index_root / 'pool.db').resolve()}")
    try:
        db.create_schema()
        vectors, _stats = embed_chunks(
            chunks, db=db, model_name=encoder.name, encoder_factory=lambda: encoder
        )
    finally:
        db.close()
    fingerprint = content_hash(
        str(FORMAT_VERSION), encoder.name, *(d.content_hash for d in documents)
    )
    version = f"pool-{fingerprint[:12]}"
    write_version(
        index_root,
        version,
        documents=documents,
        chunks=chunks,
        vectors=np.asarray(vectors, dtype=np.float32),
        approximate_above=10**9,  # always exact search: the pool is small
        manifest={
            "format": FORMAT_VERSION,
            "model": encoder.name,
            "built_at": datetime.now(UTC).isoformat(),
            "fingerprint": fingerprint,
            "sources": {POOL_SOURCE: {"version": "scratch", "documents": len(documents)}},
        },
    )
    set_current(index_root, version)
    return load_index(index_root)


# --- metrics -----------------------------------------------------------------------------------


@dataclass
class DuplicatesReport:
    mode: str
    n: int
    recall_at_1: float
    recall_at_5: float
    mrr_at_10: float
    pool: int = 0  # threads in the pool
    per_query: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "n": self.n,
            "recall@1": round(self.recall_at_1, 4),
            "recall@5": round(self.recall_at_5, 4),
            "mrr@10": round(self.mrr_at_10, 4),
            "pool": self.pool,
        }


def evaluate_duplicates(
    pairs: Sequence[DuplicatePair],
    ask: Callable[[str], list[str]],
    *,
    mode: str,
    pool: int = 0,
) -> DuplicatesReport:
    """``ask(query) -> ranked thread keys``; a hit is the pair's ``original_url``."""
    ranks: list[int | None] = []
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        ranked = ask(pair.query)
        rank = first_hit_rank(ranked[:10], [pair.original_url])
        ranks.append(rank)
        rows.append({"id": pair.id, "rank": rank, "top": ranked[:3]})
    return DuplicatesReport(
        mode=mode,
        n=len(ranks),
        recall_at_1=recall_at(ranks, 1),
        recall_at_5=recall_at(ranks, 5),
        mrr_at_10=mean_reciprocal_rank(ranks),
        pool=pool,
        per_query=rows,
    )


def run_duplicates_eval(
    pairs: Sequence[DuplicatePair],
    distractors: Sequence[Distractor],
    encoder: Encoder,
    modes: Sequence[Mode],
    *,
    chunk_max_words: int = 160,
    chunk_overlap_words: int = 30,
    params: SearchParams | None = None,
) -> list[DuplicatesReport]:
    """Build the pool in a temporary folder, ask every query in each mode, then clean up."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigError(f"unknown search mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    threads = pool_threads(pairs, distractors)
    documents = pool_documents(threads)
    with tempfile.TemporaryDirectory(prefix="supportbot-dupes-") as tmp:
        index = build_pool_index(
            documents,
            encoder,
            Path(tmp) / "indexes",
            chunk_max_words=chunk_max_words,
            chunk_overlap_words=chunk_overlap_words,
        )
        retriever = Retriever(index, encoder, params)
        reports = []
        for mode in modes:

            def ask(query: str, mode: Mode = mode) -> list[str]:
                return [h.doc_id for h in retriever.search(query, mode=mode, k=10).hits]

            reports.append(evaluate_duplicates(pairs, ask, mode=mode, pool=len(documents)))
    return reports


def table_rows(reports: Sequence[DuplicatesReport]) -> list[list[str]]:
    """Header and one row per report, as strings, for a plain-text table."""
    rows = [["mode", "n", "R@1", "R@5", "MRR@10"]]
    for r in reports:
        rows.append(
            [
                r.mode,
                str(r.n),
                f"{r.recall_at_1:.3f}",
                f"{r.recall_at_5:.3f}",
                f"{r.mrr_at_10:.3f}",
            ]
        )
    return rows
