"""Hybrid search over a loaded index: dense + lexical + API symbols, fused per document.

``search`` is pure given a query vector; :class:`Retriever` adds the encoder for callers that
just have text (CLI, eval, and the service's worker thread).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from bot.retrieval.backends import detect_backend, prefer_backend_guides
from bot.retrieval.confidence import ConfidenceModel, default_confidence_model
from bot.retrieval.encoder import Encoder
from bot.retrieval.fusion import DocScore, aggregate_chunks, order_by_score, top_k, weighted_rrf
from bot.retrieval.index import LoadedIndex
from bot.retrieval.question_match import QuestionMatch, best_question_match
from bot.retrieval.rerank import CandidateEvidence, candidate_features, kind_features
from bot.retrieval.symbols import SymbolMatch, match_symbols, subject_symbols
from bot.retrieval.text import clean_query, lexical_tokens, title_line

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")


@dataclass(frozen=True)
class SearchParams:
    chunk_candidates: int = 300
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    symbol_weight: float = 1.0
    second_chunk_weight: float = 0.1
    dense_query_words: int = 120  # MiniLM reads ~256 word pieces; keep the prose, trim code
    # Confidence: logistic model of P(top document is a right answer), see ``confidence``.
    conf_bias: float = -3.3
    conf_cosine: float = 3.4
    conf_agreement: float = 0.95
    conf_symbol: float = 0.5
    conf_margin: float = 6.5
    # Past-answer threads: how they rank among pages and among themselves, and why these
    # values, is in docs/retrieval-threads.md.
    thread_answer_weight: float = 0.3  # a thread's answer chunk, among threads
    thread_lexical_weight: float = 0.5  # score-level fusion among threads (0.25..1 all equal)
    thread_bonus_cosine: float = 0.7  # a near-duplicate question from here on ...
    thread_bonus: float = 1.0  # ... gets one more ranked list of this weight
    # Second stage: how many of the fusion's top documents the learnt reranker re-orders
    # (0 turns it off; an index built without one is never reranked).
    rerank_candidates: int = 30
    # How sure a reranked answer is (None: the index's learnt one, else the shipped
    # ``confidence_model.json``; see ``confidence``).
    confidence_model: ConfidenceModel | None = None
    # A question that paraphrases a docs question heading this closely gets that section
    # first and at least this confidence (``question_match``; above 1 turns it off). Why
    # 0.80: BENCHMARKS.md, "A question the docs already ask".
    question_match_cosine: float = 0.80


@dataclass(frozen=True)
class Hit:
    doc_id: str
    title: str
    url: str
    kind: str
    score: float  # fused score (mode-specific scale)
    dense: float | None  # best chunk cosine similarity
    lexical: float | None  # best chunk BM25 score
    symbol: SymbolMatch | None
    dense_rank: int | None  # the document's rank in the dense list alone (1 = first)
    lexical_rank: int | None  # ... and in the lexical list alone
    section: str
    excerpt: str  # text of the best-matching chunk
    intro: str = ""  # text of the document's first chunk (its summary), for when the
    # best-matching chunk is all code
    meta: tuple[tuple[str, str], ...] = ()  # the document's display facts
    rerank: float | None = None  # the reranker's score (None: not reranked)


@dataclass(frozen=True)
class SearchResult:
    query: str
    mode: Mode
    hits: list[Hit]
    confidence: float
    symbols: list[SymbolMatch]
    matched_question: str | None = None  # the docs question the query paraphrases, if any


def dense_query_text(prose: str, code: str, *, max_words: int = 120) -> str:
    words = prose.split()
    if len(words) < max_words and code:
        words += code.split()[: max_words - len(words)]
    return " ".join(words[:max_words])


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass
class FirstStage:
    """The candidates of one query and everything dense, lexical and symbol search said."""

    fused: dict[int, float]
    dense_by_doc: dict[int, DocScore]
    lexical_by_doc: dict[int, DocScore]
    dense_rank: dict[int, int]
    lexical_rank: dict[int, int]
    symbol_by_doc: dict[int, SymbolMatch]
    symbol_matches: list[SymbolMatch]
    lexical_max: float
    query_terms: frozenset[str]


def first_stage(
    index: LoadedIndex,
    query: str,
    query_vector: np.ndarray | None,
    *,
    mode: Mode = "hybrid",
    params: SearchParams | None = None,
) -> FirstStage:
    """Dense and lexical chunk search, API-symbol matches, and their fusion per document."""
    p = params or SearchParams()
    prose, code = clean_query(query)
    n_chunks = len(index.chunks)
    candidates = min(p.chunk_candidates, n_chunks)
    terms = lexical_tokens(f"{prose}\n{code}")

    dense_docs: list[DocScore] = []
    if mode in ("hybrid", "dense") and n_chunks:
        if query_vector is None:
            raise ValueError("dense and hybrid search need a query vector")
        qv = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(1, -1)
        sims, rows = index.dense.search(qv, candidates)
        keep = rows[0] >= 0
        dense_docs = _aggregate(index, rows[0][keep], sims[0][keep], p)

    lexical_docs: list[DocScore] = []
    lexical_max = 0.0
    if mode in ("hybrid", "lexical") and n_chunks:
        vocab = index.lexical.vocab_dict
        tokens = [t for t in terms if t in vocab]
        if tokens:
            scores = np.asarray(index.lexical.get_scores(tokens), dtype=np.float32)
            rows_l = top_k(scores, candidates)
            rows_l = rows_l[scores[rows_l] > 0]
            lexical_docs = _aggregate(index, rows_l, scores[rows_l], p)
            lexical_max = float(scores[rows_l[0]]) if len(rows_l) else 0.0

    symbol_matches: list[SymbolMatch] = []
    if mode == "hybrid":
        symbol_matches = subject_symbols(
            match_symbols(f"{prose}\n{code}", index.symbols), title_line(prose, code), index.symbols
        )
    symbol_docs = [
        (index.doc_rows[m.doc_id], m) for m in symbol_matches if m.doc_id in index.doc_rows
    ]

    if mode == "dense":
        fused = {d.doc: d.score for d in dense_docs}
    elif mode == "lexical":
        fused = {d.doc: d.score for d in lexical_docs}
    else:
        fused = weighted_rrf(
            [
                ([d.doc for d in dense_docs], p.dense_weight),
                ([d.doc for d in lexical_docs], p.lexical_weight),
            ],
            k=p.rrf_k,
        )
        # Symbol evidence counts in proportion to how explicit the mention was.
        for rank, (doc, m) in enumerate(symbol_docs, start=1):
            fused[doc] = fused.get(doc, 0.0) + p.symbol_weight * m.strength / (p.rrf_k + rank)
        _fuse_threads(fused, dense_docs, lexical_docs, p)
    return FirstStage(
        fused=fused,
        dense_by_doc={d.doc: d for d in dense_docs},
        lexical_by_doc={d.doc: d for d in lexical_docs},
        dense_rank={d.doc: r for r, d in enumerate(dense_docs, start=1)},
        lexical_rank={d.doc: r for r, d in enumerate(lexical_docs, start=1)},
        symbol_by_doc={doc: m for doc, m in symbol_docs},
        symbol_matches=symbol_matches,
        lexical_max=lexical_max,
        query_terms=frozenset(terms),
    )


def rerank_features(
    index: LoadedIndex,
    stage: FirstStage,
    docs: Sequence[int],
    query_vector: np.ndarray,
    params: SearchParams,
) -> np.ndarray:
    """The reranker's feature rows for ``docs`` (rows of ``index.docs``), in that order."""
    qv = np.asarray(query_vector, dtype=np.float32).reshape(-1)
    vectors = index.chunk_vectors()
    chunk_cosines = [vectors[index.doc_chunks(doc)] @ qv for doc in docs]
    first = [float(vectors[_first_chunk(index, doc)] @ qv) for doc in docs]
    info = [index.docs[doc] for doc in docs]
    evidence = [
        CandidateEvidence(
            doc=doc,
            fused=stage.fused.get(doc, 0.0),
            dense_rank=stage.dense_rank.get(doc),
            lexical_rank=stage.lexical_rank.get(doc),
            lexical_best=(lx.best if (lx := stage.lexical_by_doc.get(doc)) else None),
            symbol=(m.strength if (m := stage.symbol_by_doc.get(doc)) else 0.0),
        )
        for doc in docs
    ]
    return candidate_features(
        evidence,
        chunk_cosines=chunk_cosines,
        first_cosines=first,
        lexical_max=stage.lexical_max,
        title_terms=[index.title_terms(doc) for doc in docs],
        query_terms=stage.query_terms,
        kinds=[kind_features(d.doc_id, d.kind, d.source) for d in info],
        chunk_counts=[len(index.doc_chunks(doc)) for doc in docs],
        rrf_k=params.rrf_k,
    )


def rerank(
    index: LoadedIndex,
    stage: FirstStage,
    query_vector: np.ndarray,
    params: SearchParams,
) -> tuple[list[int], dict[int, float]]:
    """The documents in final order, and the reranker's score of each reranked one.

    The top ``rerank_candidates`` of the fusion that are not past-answer threads are
    re-ordered among the places they hold; threads keep the places the fusion gave them
    (their own thread-aware ordering), and everything below the cut keeps its order.
    """
    order = order_by_score(stage.fused)
    reranker = index.reranker
    if reranker is None or params.rerank_candidates <= 0:
        return order, {}
    head = order[: params.rerank_candidates]
    slots = [i for i, doc in enumerate(head) if index.docs[doc].kind != THREAD_KIND]
    docs = [head[i] for i in slots]
    if not docs:
        return order, {}
    scores = reranker.score(rerank_features(index, stage, docs, query_vector, params))
    by_doc = {doc: float(s) for doc, s in zip(docs, scores.tolist(), strict=True)}
    ranked = sorted(docs, key=lambda doc: (-by_doc[doc], doc))
    for i, doc in zip(slots, ranked, strict=True):
        head[i] = doc
    return head + order[params.rerank_candidates :], by_doc


def search(
    index: LoadedIndex,
    query: str,
    query_vector: np.ndarray | None,
    *,
    mode: Mode = "hybrid",
    k: int = 10,
    params: SearchParams | None = None,
    exclude: Collection[int] = (),
) -> SearchResult:
    """``exclude``: document rows left out of the results (confidence training drops the
    page a question was mined from, and its answers to make an unanswerable one)."""
    p = params or SearchParams()
    stage = first_stage(index, query, query_vector, mode=mode, params=p)
    for doc in exclude:
        stage.fused.pop(doc, None)
    if mode == "hybrid" and query_vector is not None:
        order, rerank_scores = rerank(index, stage, query_vector, p)
    else:
        order, rerank_scores = order_by_score(stage.fused), {}
    if mode == "hybrid" and (backend := detect_backend(query)) is not None:
        # A question that names its backend wants that backend's twin of a guide first.
        order = [
            doc
            for doc, _ in prefer_backend_guides(
                [(doc, 0.0) for doc in order], backend, doc_id=lambda d: index.docs[d].doc_id
            )
        ]

    hits: list[Hit] = []
    # Two hits at least, whatever k: the confidence looks at the runner-up.
    for doc in order[: max(k, 2)]:
        info = index.docs[doc]
        d = stage.dense_by_doc.get(doc)
        lx = stage.lexical_by_doc.get(doc)
        chunk_row = d.best_chunk if d else lx.best_chunk if lx else _first_chunk(index, doc)
        chunk = index.chunks[chunk_row] if chunk_row >= 0 else None
        hits.append(
            Hit(
                doc_id=info.doc_id,
                title=info.title,
                url=info.url,
                kind=info.kind,
                score=float(stage.fused[doc]),
                dense=float(d.best) if d else None,
                lexical=float(lx.best) if lx else None,
                dense_rank=stage.dense_rank.get(doc),
                lexical_rank=stage.lexical_rank.get(doc),
                symbol=stage.symbol_by_doc.get(doc),
                section=chunk.section if chunk else info.title,
                excerpt=chunk.text if chunk else "",
                intro=index.chunks[first].text if (first := _first_chunk(index, doc)) >= 0 else "",
                meta=info.meta,
                rerank=rerank_scores.get(doc),
            )
        )
    if hits and hits[0].rerank is not None:
        model = p.confidence_model or index.confidence or default_confidence_model()
        conf = model(hits, stage.query_terms)
    else:
        conf = confidence(hits, p)  # first-stage ranking: an index with no reranker, a thread
    return SearchResult(
        query=query,
        mode=mode,
        hits=hits[:k],
        confidence=conf,
        symbols=stage.symbol_matches,
    )


def _first_chunk(index: LoadedIndex, doc: int) -> int:
    return int(index.first_chunk[doc])


THREAD_KIND = "thread"
_ANSWER_HEADING = "Answer"


@dataclass(frozen=True)
class _ThreadScore(DocScore):
    question: float | None = None  # best question-chunk score (None: not among the candidates)
    answer: float | None = None  # best answer-chunk score
    relevance: float = 0.0  # question + thread_answer_weight × answer: orders threads


def is_answer_chunk(index: LoadedIndex, row: int) -> bool:
    """Whether chunk ``row`` of a thread document is (part of) its answer section.

    The chunker names a chunk's section by its heading path, title first, so the answer's
    chunks are "<title> > Answer (answered by ...)"; everything before is the question.
    """
    chunk = index.chunks[row]
    title = index.docs[chunk.doc].title.strip()
    rest = chunk.section[len(title) :] if chunk.section.startswith(title) else chunk.section
    return rest.startswith(f" > {_ANSWER_HEADING}")


def _fuse_threads(
    fused: dict[int, float],
    dense_docs: list[DocScore],
    lexical_docs: list[DocScore],
    p: SearchParams,
) -> None:
    """Order the threads among ``fused`` by score-level fusion; lift near-duplicates.

    In place. The set of fused scores held by threads is kept and handed out again in the
    order of dense relevance + thread_lexical_weight × lexical relevance / the best thread's,
    so threads swap places only with each other; then the near-duplicate bonus list (see
    SearchParams). With no thread among the candidates, ``fused`` is left as it is.
    """
    dense = {d.doc: d for d in dense_docs if isinstance(d, _ThreadScore)}
    lexical = {d.doc: d.relevance for d in lexical_docs if isinstance(d, _ThreadScore)}
    threads = sorted(doc for doc in set(dense) | set(lexical) if doc in fused)
    if not threads:
        return
    top_lexical = max(lexical.values(), default=0.0)

    def combined(doc: int) -> float:
        d = dense[doc].relevance if doc in dense else 0.0
        lx = lexical.get(doc, 0.0) / top_lexical if top_lexical > 0 else 0.0
        return d + p.thread_lexical_weight * lx

    slots = sorted((fused[doc] for doc in threads), reverse=True)
    ordered = sorted(threads, key=lambda doc: (-combined(doc), doc))
    for doc, score in zip(ordered, slots, strict=True):
        fused[doc] = score
    near = [i for i, doc in enumerate(ordered) if doc in dense and _is_near(dense[doc], p)]
    if near and p.thread_bonus:
        for rank, doc in enumerate(ordered[: near[-1] + 1], start=1):
            fused[doc] += p.thread_bonus / (p.rrf_k + rank)


def _is_near(d: _ThreadScore, p: SearchParams) -> bool:
    return d.question is not None and d.question >= p.thread_bonus_cosine


def _aggregate(
    index: LoadedIndex, rows: np.ndarray, scores: np.ndarray, p: SearchParams
) -> list[DocScore]:
    """Chunk scores (best first) to ranked documents.

    Non-thread documents: ``aggregate_chunks`` (best chunk + second_chunk_weight × second).
    Threads: placed by best question chunk + second_chunk_weight × best answer chunk, then
    their places refilled in order of ``relevance`` (see SearchParams). An index without
    threads ranks exactly as ``aggregate_chunks`` alone.
    """
    is_thread = np.fromiter(
        (index.docs[int(index.chunk_doc[r])].kind == THREAD_KIND for r in rows.tolist()),
        dtype=bool,
        count=len(rows),
    )
    if not is_thread.any():
        return aggregate_chunks(rows, scores, index.chunk_doc, second_weight=p.second_chunk_weight)
    ranked: list[DocScore] = aggregate_chunks(
        rows[~is_thread],
        scores[~is_thread],
        index.chunk_doc,
        second_weight=p.second_chunk_weight,
    )
    parts: dict[int, dict[bool, tuple[float, int]]] = {}
    for row, score in zip(rows[is_thread].tolist(), scores[is_thread].tolist(), strict=True):
        doc = int(index.chunk_doc[row])
        best = parts.setdefault(doc, {})
        answer = is_answer_chunk(index, row)
        if answer not in best:  # rows arrive best first
            best[answer] = (score, row)
    threads: list[_ThreadScore] = []
    for doc, best in parts.items():
        q, a = best.get(False), best.get(True)
        top = q or a
        assert top is not None
        q_score, a_score = (q[0] if q else 0.0), (a[0] if a else 0.0)
        threads.append(
            _ThreadScore(
                doc=doc,
                score=q_score + p.second_chunk_weight * a_score,
                best_chunk=top[1],
                best=top[0],
                question=q[0] if q else None,
                answer=a[0] if a else None,
                relevance=q_score + p.thread_answer_weight * a_score,
            )
        )
    ranked.extend(threads)
    ranked.sort(key=lambda d: (-d.score, d.doc))
    slots = [i for i, d in enumerate(ranked) if isinstance(d, _ThreadScore)]
    threads.sort(key=lambda t: (-t.relevance, t.doc))
    for i, t in zip(slots, threads, strict=True):
        ranked[i] = replace(t, score=ranked[i].score)
    return ranked


def confidence(hits: list[Hit], p: SearchParams) -> float:
    """Probability-like score that the top document answers the question (first stage).

    Used when the top hit was not reranked (see ``confidence.py`` for reranked ones).
    A logistic model over four signals of the top hit: its best chunk's cosine similarity,
    whether dense and lexical search each put it in their top 3, the strength of an API-symbol
    mention of it, and its fused-score margin over the runner-up. Weights were fitted on the
    development questions (leave-one-out AUC 0.80 for "top-1 is relevant"; BENCHMARKS.md) and
    rounded; they are settings, so an operator can refit them on their room's data.
    """
    if not hits:
        return 0.0
    top = hits[0]
    cos = top.dense if top.dense is not None else 0.0
    agree = (top.dense_rank or 99) <= 3 and (top.lexical_rank or 99) <= 3
    strength = top.symbol.strength if top.symbol else 0.0
    if len(hits) == 1:
        margin = 1.0
    elif top.score <= 0:
        margin = 0.0  # nothing scored: no evidence of a clear winner
    else:
        margin = (top.score - hits[1].score) / top.score
    z = (
        p.conf_bias
        + p.conf_cosine * cos
        + p.conf_agreement * agree
        + p.conf_symbol * strength
        + p.conf_margin * margin
    )
    return sigmoid(z)


def with_question_match(result: SearchResult, match: QuestionMatch | None) -> SearchResult:
    """``result`` with the matched page first and a confidence of at least the match's cosine
    (``question_match``)."""
    if match is None:
        return result
    hits = list(result.hits)
    hits.insert(0, hits.pop(match.rank))
    return replace(
        result,
        hits=hits,
        confidence=max(result.confidence, match.cosine),
        matched_question=match.heading,
    )


class Retriever:
    """An encoder plus a loaded index: text in, ranked documents out (synchronous)."""

    def __init__(
        self,
        index: LoadedIndex,
        encoder: Encoder,
        params: SearchParams | None = None,
        *,
        _headings: dict[str, np.ndarray] | None = None,
    ):
        if encoder.name != index.model:
            from bot.errors import IndexCorruptError

            raise IndexCorruptError(
                f"index {index.version} was built with model {index.model!r} but the configured "
                f"model is {encoder.name!r}: rebuild the index or change SUPPORTBOT_EMBEDDING_MODEL"
            )
        self.index = index
        self.encoder = encoder
        self.params = params or SearchParams()
        # Question headings' vectors, encoded on first use (the docs have a few dozen).
        self._headings: dict[str, np.ndarray] = {} if _headings is None else _headings

    def with_index(self, index: LoadedIndex) -> Retriever:
        return Retriever(index, self.encoder, self.params, _headings=self._headings)

    def with_params(self, **changes: object) -> Retriever:
        params = replace(self.params, **changes)  # type: ignore[arg-type]
        return Retriever(self.index, self.encoder, params, _headings=self._headings)

    def heading_vector(self, heading: str) -> np.ndarray:
        if heading not in self._headings:
            self._headings[heading] = self.encoder.encode([heading])[0]
        return self._headings[heading]

    def query_vector(self, query: str) -> np.ndarray:
        """The vector a question is searched with: its prose, then as much code as fits."""
        prose, code = clean_query(query)
        text = dense_query_text(prose, code, max_words=self.params.dense_query_words)
        return self.encoder.encode([text or query[:500]])[0]

    def search(self, query: str, *, mode: Mode = "hybrid", k: int = 10) -> SearchResult:
        vector = self.query_vector(query) if mode != "lexical" else None
        result = search(self.index, query, vector, mode=mode, k=k, params=self.params)
        if vector is None or not result.hits:
            return result
        match = best_question_match(
            [h.section for h in result.hits],
            [h.kind for h in result.hits],
            vector,
            self.heading_vector,
            min_cosine=self.params.question_match_cosine,
        )
        return with_question_match(result, match)
