"""Learn the answer confidence at index build, from questions the corpus itself gives.

The reranker's training questions (``reranker_training.mine_queries``: keras.io sentences
that link or name the page that answers them, the FAQ's question headings) also say whether
the bot's *top* page would be right. Each question is run through the whole search (first
stage, reranker, hits; the page it was taken from left out) and labelled "the top page is
one of its answers". To keep that honest the questions are **cross-fitted**: they are split
into folds by their source page (a hash, so the split is stable), and each fold is scored by
a reranker learnt from the other folds only, so no question is scored by a reranker that saw
it, just as a user's question never was.

The corpus can also give honest "not in the docs" questions: the same question with its
answers (and its source page) removed from the results. Whatever comes first then is not
one of its answers, and its signals look like those of a question the docs do not answer:
close pages sharing words, none of them the one. They are labelled wrong and counted as
unanswerable in the report.

The confidence is a logistic model over the signals of ``bot.retrieval.confidence``, fitted
on all rows (seeded, deterministic) and saved as ``confidence.json`` next to
``reranker.json``, so it always matches that version's reranker. Its held-out numbers (AUC,
the coverage / precision curve) come from the folds: every row scored by a confidence fitted
without its fold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bot.corpus.documents import Document, content_hash
from bot.retrieval.confidence import (
    SIGNALS,
    ConfidenceModel,
    auc,
    confidence_features,
    fit_confidence,
    load_index_confidence,
    name_each_other,
)
from bot.retrieval.encoder import Encoder
from bot.retrieval.index import LoadedIndex
from bot.retrieval.rerank import Reranker, fit_pairwise
from bot.retrieval.search import THREAD_KIND, Hit, SearchParams, dense_query_text, search
from bot.retrieval.text import clean_query
from index_builder.reranker_training import (
    TrainingQuery,
    _plain,
    learning_queries,
    mine_queries,
    training_groups,
)

log = logging.getLogger(__name__)

#: Bump when the rows, the signals or the fit change, so a copied confidence is not reused.
CONFIDENCE_VERSION = "4"
#: The signals the learnt model uses: the shipped model's. Each extra signal tried (softmax
#: share, lead over the third, title overlap, dense / lexical rank, API page) moved the held-out
#: AUC by less than one question's worth (BENCHMARKS.md), so none was added.
LEARNT_SIGNALS: tuple[str, ...] = SIGNALS
#: Which mined questions become confidence rows. The backticked-symbol sentences are left out:
#: they name their answer ("use `keras.ops.sum` to ..."), so their top page is right 93 % of
#: the time and a model fitted on them learns to trust symbol mentions, which users seldom
#: write; the link sentences and the FAQ's questions describe the task like a user does.
#: (The fold rerankers learn from the questions the served one learns from.)
ROW_ORIGINS: tuple[str, ...] = ("link", "heading")
FOLDS = 5
L2 = 1.0
MIN_ROWS = 100  # fewer labelled questions than this: keep the shipped model
MIN_EACH = 20  # ... or fewer right (or wrong) top pages than this
#: How much one "answer removed" row weighs against a real one: they are as many as the
#: answerable rows, and at full weight they would pull every confidence down.
REMOVED_WEIGHT = 0.5
#: No signal may count against the top page (``fit_confidence(monotone=True)``): every one
#: of them is "more is better" by construction, and the unbounded fit gave the cosine and the
#: symbol mention negative weights (they stand in for the lead on the mined questions). On the
#: same rows: synthetic held-out AUC 0.686 -> 0.694; on dev (only scored) at the rule's
#: threshold 18 % -> 28 % replied, top-1 right 1.00 -> 0.94 (BENCHMARKS.md).
MONOTONE = True


@dataclass(frozen=True)
class ConfidenceRow:
    features: np.ndarray  # the LEARNT_SIGNALS of its hits
    right: bool  # the top page is one of its answers
    rank: int | None  # first right page's rank (None: none in the top 10, or removed)
    fold: int
    removed: bool  # its answers were removed: a "not in the docs" question
    origin: str  # the mined question's kind: link, symbol, heading
    #: the top page is not one of its answers, but it and an answer in the results name each
    #: other (``confidence.name_each_other``): the docs themselves point from one to the other
    names_answer: bool = False


def fold_of(source: str, folds: int = FOLDS) -> int:
    return int(content_hash("confidence-fold", source)[:8], 16) % folds


def _cached_encoder(
    encode: Callable[[list[str]], np.ndarray],
) -> Callable[[list[str]], np.ndarray]:
    """``encode`` that computes each text once (the rows need the same vectors again)."""
    cache: dict[str, np.ndarray] = {}

    def cached(texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            for text, vector in zip(missing, encode(missing), strict=True):
                cache[text] = vector
        return np.asarray([cache[t] for t in texts])

    return cached


def _query_text(q: TrainingQuery, params: SearchParams) -> str:
    # The same text ``training_groups`` and ``Retriever.search`` encode.
    return (
        dense_query_text(*clean_query(q.text), max_words=params.dense_query_words) or (q.text[:500])
    )


def fold_rerankers(
    index: LoadedIndex,
    queries: Sequence[TrainingQuery],
    encode: Callable[[list[str]], np.ndarray],
    params: SearchParams,
    *,
    folds: int = FOLDS,
    seed: int = 0,
) -> dict[int, Reranker]:
    """Fold -> a reranker learnt from the questions of the other folds (as ``index build``
    learns the served one). A fold whose complement has nothing to learn from is missing."""
    groups: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for f in range(folds):
        part = [q for q in queries if fold_of(q.source, folds) == f]
        g = training_groups(index, part, encode, params)
        groups[f] = g.train + [(x, y) for x, y, _ in g.held_out]
    out: dict[int, Reranker] = {}
    for f in range(folds):
        rest = [grp for other, gs in groups.items() if other != f for grp in gs]
        try:
            out[f] = fit_pairwise(rest, seed=seed)
        except ValueError:
            continue
    return out


def confidence_rows(
    index: LoadedIndex,
    queries: Sequence[TrainingQuery],
    encode: Callable[[list[str]], np.ndarray],
    params: SearchParams,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    signals: Sequence[str] = LEARNT_SIGNALS,
    removed: bool = True,
    origins: Sequence[str] = ROW_ORIGINS,
    copies: Mapping[str, Collection[str]] | None = None,
) -> list[ConfidenceRow]:
    """One row per distinct mined question of ``origins`` whose answers are in the index
    (plus, with ``removed``, one per question with its answers taken out), each searched
    with the reranker of its fold: learnt from the other folds' questions of the origins the
    served reranker learns from (``reranker_training.learning_queries``).

    Left out of each question's results, as its source page is: the pages in
    ``copies[question text]`` (see ``verbatim_copies``)."""
    encode = _cached_encoder(encode)
    learn = learning_queries(queries)  # what the served reranker learns from
    rerankers = fold_rerankers(index, learn, encode, params, folds=folds, seed=seed)
    usable = [
        q
        for q in queries
        if q.origin in origins
        and fold_of(q.source, folds) in rerankers
        and any(r in index.doc_rows for r in q.relevant)
    ]
    usable = list({q.text: q for q in reversed(usable)}.values())[::-1]  # first of each text
    if not usable:
        return []
    vectors = encode([_query_text(q, params) for q in usable])
    views = {f: replace(index, reranker=r) for f, r in rerankers.items()}
    rows: list[ConfidenceRow] = []
    for q, qv in zip(usable, vectors, strict=True):
        f = fold_of(q.source, folds)
        answers = {index.doc_rows[r] for r in q.relevant if r in index.doc_rows}
        also = (copies or {}).get(q.text, ())
        source = {index.doc_rows[d] for d in (q.source, *also) if d in index.doc_rows}
        cases = [(False, source)] + ([(True, source | answers)] if removed else [])
        for is_removed, exclude in cases:
            result = search(views[f], q.text, qv, k=10, params=params, exclude=exclude)
            if not result.hits or result.hits[0].rerank is None:
                continue  # a thread or nothing on top: the first-stage confidence applies
            ranked = [index.doc_rows[h.doc_id] for h in result.hits]
            rank = next((i for i, d in enumerate(ranked, start=1) if d in answers), None)
            named = names_an_answer(result.hits, [d in answers for d in ranked])
            terms = _query_terms(q.text)
            rows.append(
                ConfidenceRow(
                    features=confidence_features(result.hits, signals, terms),
                    right=rank == 1,
                    rank=rank,
                    fold=f,
                    removed=is_removed,
                    origin=q.origin,
                    names_answer=named,
                )
            )
    return rows


def names_an_answer(hits: Sequence[Hit], is_answer: Sequence[bool]) -> bool:
    """Whether the top hit is not an answer but it and an answer below it name each other
    (``confidence.name_each_other``): the FAQ entry that says "use an `EarlyStopping`
    callback" on top of a question whose labelled answer is the EarlyStopping page. A
    measured alternative label (``benchmarks/confidence_ablation.py``), not the shipped one."""
    if not hits or is_answer[0]:
        return False
    return any(name_each_other(hits[0], h) for h, a in zip(hits, is_answer, strict=True) if a)


def verbatim_copies(
    queries: Sequence[TrainingQuery], documents: Sequence[Document]
) -> dict[str, tuple[str, ...]]:
    """Question text -> the other pages that contain it word for word.

    Twin pages repeat sentences (the JAX / TensorFlow / PyTorch versions of a guide, model
    pages sharing a "see the models page" line): such a twin would match the question
    verbatim, as its source would, and label a good ranking wrong, so it is left out too.
    """

    def flat(text: str) -> str:
        return " ".join(_plain(text).split()).lower()

    texts = [(d.doc_id, flat(d.text)) for d in documents if d.kind != THREAD_KIND]
    out: dict[str, tuple[str, ...]] = {}
    for q in queries:
        needle = " ".join(q.text.split()).lower()
        twins = tuple(i for i, text in texts if i != q.source and needle in text)
        if twins:
            out[q.text] = twins
    return out


def _query_terms(text: str) -> frozenset[str]:
    from bot.retrieval.text import lexical_tokens

    prose, code = clean_query(text)
    return frozenset(lexical_tokens(f"{prose}\n{code}"))


def row_weights(
    rows: Sequence[ConfidenceRow], removed_weight: float = REMOVED_WEIGHT
) -> np.ndarray:
    return np.array([removed_weight if r.removed else 1.0 for r in rows])


def held_out_scores(
    rows: Sequence[ConfidenceRow],
    *,
    signals: Sequence[str] = LEARNT_SIGNALS,
    l2: float = L2,
    removed_weight: float = REMOVED_WEIGHT,
    monotone: bool = MONOTONE,
) -> np.ndarray:
    """Each row's confidence from a model fitted without its fold (NaN where a fold's
    complement lacks a label)."""
    x = np.asarray([r.features for r in rows])
    y = np.asarray([r.right for r in rows])
    w = row_weights(rows, removed_weight)
    fold = np.asarray([r.fold for r in rows])
    out = np.full(len(rows), np.nan)
    for f in sorted(set(fold.tolist())):
        test = fold == f
        try:
            model = fit_confidence(
                x[~test],
                y[~test],
                l2=l2,
                signals=signals,
                weight=w[~test],
                standardise=True,
                monotone=monotone,
            )
        except ValueError:
            continue
        out[test] = [model.probability(row) for row in x[test]]
    return out


def corpus_key(reranker: Reranker) -> str:
    """What the confidence depends on: the reranker's corpus (its documents and model) and
    this code; a copied reranker with the same key keeps its confidence."""
    return content_hash(CONFIDENCE_VERSION, str(dict(reranker.info).get("corpus", "")))


def train_confidence(
    index: LoadedIndex,
    documents: Sequence[Document],
    encoder: Encoder,
    *,
    params: SearchParams | None = None,
    seed: int = 0,
) -> tuple[ConfidenceModel | None, dict[str, Any]]:
    """The index's confidence (None when the corpus gives too few questions) and a report."""
    p = params or SearchParams()
    if index.reranker is None:
        return None, {"skipped": "no reranker"}
    queries = mine_queries(documents)
    rows = confidence_rows(
        index,
        queries,
        encoder.encode,
        p,
        seed=seed,
        copies=verbatim_copies([q for q in queries if q.origin in ROW_ORIGINS], documents),
    )
    real = [r for r in rows if not r.removed]
    right = sum(r.right for r in real)
    report: dict[str, Any] = {
        "questions": len(real),
        "right_top": right,
        "answers_removed": len(rows) - len(real),
    }
    wrong = len(rows) - right
    if len(real) < MIN_ROWS or right < MIN_EACH or wrong < MIN_EACH:
        report["skipped"] = (
            f"too few questions ({len(real)}, {right} with the right top page; "
            f"needs {MIN_ROWS} and {MIN_EACH} of each)"
        )
        return None, report
    held = held_out_scores(rows)
    ok = ~np.isnan(held)
    labels = np.asarray([r.right for r in rows])
    report["held_out_auc"] = _round(auc(held[ok], labels[ok]))
    answerable = np.asarray([not r.removed for r in rows])
    report["held_out_auc_answerable"] = _round(auc(held[ok & answerable], labels[ok & answerable]))
    x = np.asarray([r.features for r in rows])
    model = fit_confidence(
        x,
        labels,
        l2=L2,
        signals=LEARNT_SIGNALS,
        weight=row_weights(rows),
        standardise=True,
        monotone=MONOTONE,
    )
    info = dict(model.info)
    info.update(report)
    info.update(
        {
            "monotone": MONOTONE,
            "seed": seed,
            "folds": FOLDS,
            "version": CONFIDENCE_VERSION,
            "key": corpus_key(index.reranker),
        }
    )
    return replace(model, info=tuple(sorted(info.items()))), report


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def attach_confidence(
    index_root: Path,
    version: str,
    previous: str | None,
    reranker: Reranker | None,
    documents: Sequence[Document],
    get_encoder: Callable[[], Encoder],
    *,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Give a new version the confidence of its reranker: copy, learn, or leave the shipped one.

    Returns what the build reports (None: no reranker, so the first-stage confidence applies).
    A previous version's confidence is copied when it was learnt for the same reranker corpus
    (a quick re-publish after new past answers copies the reranker too).
    """
    from bot.retrieval.index import load_index

    if reranker is None:
        return None
    key = corpus_key(reranker)
    if previous:
        old = load_index_confidence(index_root / previous)
        if old is not None and dict(old.info).get("key") == key:
            old.save(index_root / version)
            return {**dict(old.info), "reused": True}
    started = time.perf_counter()
    model, report = train_confidence(
        load_index(index_root, version), documents, get_encoder(), seed=seed
    )
    if model is None:
        log.info("confidence: %s; using the shipped model", report.get("skipped"))
        return {**report, "shipped": True}
    model.save(index_root / version)
    log.info(
        "confidence learnt from %s mined questions in %.1f s; held-out AUC %.3f",
        report["questions"],
        time.perf_counter() - started,
        report.get("held_out_auc") or 0.0,
    )
    return dict(model.info)


def describe(report: dict[str, Any]) -> str:
    """One line for ``index build``'s summary."""
    if report.get("shipped"):
        return f"confidence: the shipped model ({report.get('skipped')})"
    how = "copied from the previous version" if report.get("reused") else "learnt"
    return (
        f"confidence: {how} from {report.get('questions')} questions mined from the docs "
        f"(+{report.get('answers_removed')} with their answers removed), each scored by a "
        f"reranker that never saw it; held-out AUC {report.get('held_out_auc')}"
    )
