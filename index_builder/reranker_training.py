"""Teach the second-stage reranker from the corpus itself (never from the eval questions).

The keras.io pages point at each other the way a maintainer answers a question: a sentence
says what you want to do and links the page that shows how ("use the [`EarlyStopping`
callback](/api/callbacks/early_stopping/) to interrupt training when ..."), or names the API
symbol that does it in backticks. Each such sentence is a training query and the linked or
named documents are its right answers. The page the sentence comes from is left out of its
candidates, since the sentence would match itself verbatim.

For every query the real first stage runs (``bot.retrieval.search.first_stage``), and the
reranker learns to put the right documents first among the fusion's top candidates
(``bot.retrieval.rerank.fit_pairwise``). A fifth of the source pages (chosen by a hash of
their id, so the split is stable) is held out to report how much the second stage helps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bot.corpus.documents import Document, content_hash
from bot.retrieval.encoder import Encoder
from bot.retrieval.index import LoadedIndex
from bot.retrieval.rerank import Reranker, fit_pairwise
from bot.retrieval.search import (
    THREAD_KIND,
    SearchParams,
    dense_query_text,
    first_stage,
    rerank_features,
)
from bot.retrieval.text import clean_query

#: Bump when the query mining or the features change, so a cached reranker is not reused.
TRAINING_VERSION = "2"
#: Which mined sentences the reranker learns from: those that describe a task and link the
#: page that does it, and the FAQ's questions. Left out: the sentences that name their
#: answer in backticks ("use `keras.ops.sum` to ..."). In the docs' prose a named symbol is
#: nearly always the answer, so a reranker that learns from them ranks any page the
#: question names first; users name the APIs of the code they are stuck with ("an error in
#: `model.compile(metrics=['F1'])`"), and then the named page is seldom what they need.
#: Measured (BENCHMARKS.md, "The reranker learns from prose sentences only"): on the
#: held-out prose sentences 0.718 -> 0.708 MRR, on the dev questions (scored, not fitted)
#: 0.738 -> 0.758.
TRAINING_ORIGINS: tuple[str, ...] = ("link", "heading")
MIN_QUERIES = 40  # fewer than this and the learnt weights are noise: no second stage

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
_LINK = re.compile(r"\[([^\]\n]{1,200})\]\(([^)\s]{1,300})\)")
_SYMBOL = re.compile(r"`((?:tf\.)?keras\.[A-Za-z_][\w.]*)(?:\(\))?`")
_SENTENCE = re.compile(r"(?<=[.!?:])\s+(?=[A-Z`\[])")
_HEADING_LINE = re.compile(r"^\s*(#|\||-{3,}|\*\*Description)", re.M)


@dataclass(frozen=True)
class TrainingQuery:
    text: str
    relevant: tuple[str, ...]  # doc ids that answer it
    source: str  # doc id of the page it was taken from (not a candidate)
    origin: str  # "link" or "symbol"


def _path_of(url: str) -> tuple[str, str]:
    """(keras.io path without slashes, fragment) of a site URL; ("", "") for other sites."""
    parts = urlsplit(url)
    if parts.netloc and parts.netloc not in ("keras.io", "www.keras.io"):
        return "", ""
    if not parts.netloc and not parts.path.startswith("/"):
        return "", ""  # relative links ("../x") cannot be resolved reliably
    return parts.path.strip("/"), parts.fragment


def _sentences(text: str) -> Iterable[str]:
    prose = _FENCE.sub("\n\n", text)
    for paragraph in re.split(r"\n\s*\n", prose):
        if _HEADING_LINE.match(paragraph):
            continue  # headings, tables, rules: not sentences
        flat = " ".join(paragraph.split())
        yield from (s.strip() for s in _SENTENCE.split(flat) if s.strip())


def mine_queries(
    documents: Sequence[Document], *, max_symbol_queries: int = 600
) -> list[TrainingQuery]:
    """Link and symbol sentences of the keras.io pages, as (query, right documents)."""
    by_path: dict[str, list[Document]] = {}
    names: dict[str, str] = {}
    for d in documents:
        if d.kind == THREAD_KIND:
            continue
        path, _ = _path_of(d.url)
        if path:
            by_path.setdefault(path, []).append(d)
        if d.kind == "api":
            for name in (d.doc_id, *d.aliases):
                names[name] = d.doc_id
    links: list[TrainingQuery] = []
    symbols: list[TrainingQuery] = []
    for d in documents:
        if d.kind == THREAD_KIND or d.source == "site-map":
            continue
        if d.kind == "page":
            links.extend(_question_headings(d, by_path))
        for sentence in _sentences(d.text):
            query, targets = _link_query(sentence, by_path, d.doc_id)
            if query and targets and d.kind == "page":
                links.append(TrainingQuery(query, targets, d.doc_id, "link"))
                continue
            mentioned = [m.removeprefix("tf.") for m in _SYMBOL.findall(sentence)]
            found = [names[m] for m in mentioned if m in names]
            text = _plain(sentence)
            if found and 8 <= len(text.split()) <= 60:
                symbols.append(TrainingQuery(text, tuple(dict.fromkeys(found)), d.doc_id, "symbol"))
    # Symbol sentences outnumber links; keep a spread of them (every n-th), deterministically.
    if len(symbols) > max_symbol_queries:
        step = len(symbols) / max_symbol_queries
        symbols = [symbols[int(i * step)] for i in range(max_symbol_queries)]
    return links + symbols


_QUESTION_HEADING = re.compile(r"^(#{2,4})\s+(.{10,200}\?)\s*$", re.M)


def learning_queries(queries: Sequence[TrainingQuery]) -> list[TrainingQuery]:
    """Which of the mined ``queries`` a reranker learns from: those of ``TRAINING_ORIGINS``,
    or all of them when there are fewer than ``MIN_QUERIES`` of those. That is an index of
    the keras API alone: its docstrings name symbols and seldom link, and a reranker that
    trusts the names ranked no worse there than the fusion alone and kept the unanswerable
    questions quieter (dev questions: MRR@10 0.569 vs 0.563, 7 of 7 vs 6 of 7 quiet)."""
    prose = [q for q in queries if q.origin in TRAINING_ORIGINS]
    return prose if len(prose) >= MIN_QUERIES else list(queries)


def _question_headings(d: Document, by_path: dict[str, list[Document]]) -> list[TrainingQuery]:
    """A heading that asks a question (the FAQ's) answered by the pages its section links."""
    text = _FENCE.sub("\n", d.text)
    heads = list(_QUESTION_HEADING.finditer(text))
    out: list[TrainingQuery] = []
    for m in heads:
        level = len(m.group(1))
        end = re.compile(rf"^#{{1,{level}}}\s", re.M).search(text, m.end())
        body = text[m.end() : end.start() if end else len(text)]
        targets = _link_targets(body, by_path, d.doc_id)
        if targets:
            out.append(TrainingQuery(_plain(m.group(2)), targets, d.doc_id, "heading"))
    return out


def _link_targets(text: str, by_path: dict[str, list[Document]], source: str) -> tuple[str, ...]:
    """The documents the keras.io links in ``text`` point at (not ``source`` itself); a link
    with a fragment picks the documents of that anchor when the page has several."""
    targets: list[str] = []
    for _anchor, url in _LINK.findall(text):
        path, fragment = _path_of(url)
        docs = [d for d in by_path.get(path, []) if d.doc_id != source]
        if fragment:
            docs = [d for d in docs if urlsplit(d.url).fragment == fragment] or docs
        targets.extend(d.doc_id for d in docs[:8])
    return tuple(dict.fromkeys(targets))


def _plain(sentence: str) -> str:
    text = _LINK.sub(lambda m: m.group(1), sentence)
    return " ".join(text.replace("`", "").replace("**", "").split())


def _link_query(
    sentence: str, by_path: dict[str, list[Document]], source: str
) -> tuple[str, tuple[str, ...]]:
    targets = _link_targets(sentence, by_path, source)
    text = _plain(sentence)
    anchors = " ".join(a for a, _ in _LINK.findall(sentence))
    # A bare list of links ("- [Guide title](/guides/x)") only repeats the target's title.
    if len(text.split()) - len(anchors.split()) < 6 or len(text.split()) > 60:
        return "", ()
    return text, targets


def _held_out(source: str) -> bool:
    return int(content_hash("reranker-split", source)[:8], 16) % 5 == 0


@dataclass(frozen=True)
class TrainingGroups:
    train: list[tuple[np.ndarray, np.ndarray]]
    held_out: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # + first-stage order positions


def training_groups(
    index: LoadedIndex,
    queries: Sequence[TrainingQuery],
    encode: Callable[[list[str]], np.ndarray],
    params: SearchParams,
) -> TrainingGroups:
    """Run the first stage for every query; features and labels of its top candidates."""
    texts = [
        dense_query_text(*clean_query(q.text), max_words=params.dense_query_words) for q in queries
    ]
    vectors = encode([t or q.text[:500] for t, q in zip(texts, queries, strict=True)])
    train: list[tuple[np.ndarray, np.ndarray]] = []
    held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for q, qv in zip(queries, vectors, strict=True):
        stage = first_stage(index, q.text, qv, params=params)
        source_row = index.doc_rows.get(q.source)
        stage.fused.pop(source_row if source_row is not None else -1, None)
        order = sorted(stage.fused, key=lambda doc: (-stage.fused[doc], doc))
        head = [d for d in order if index.docs[d].kind != THREAD_KIND][: params.rerank_candidates]
        wanted = {index.doc_rows[r] for r in q.relevant if r in index.doc_rows}
        y = np.array([doc in wanted for doc in head], dtype=bool)
        if not y.any() or y.all():
            continue  # nothing to learn from this query at this cut
        x = rerank_features(index, stage, head, qv, params)
        if _held_out(q.source):
            held.append((x, y, np.arange(len(head))))
        else:
            train.append((x, y))
    return TrainingGroups(train, held)


def _mrr(
    groups: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    score: Callable[[np.ndarray], np.ndarray] | None,
) -> float:
    total = 0.0
    for x, y, position in groups:
        keys = -score(x) if score is not None else position.astype(np.float64)
        ranked = y[np.lexsort((position, keys))]
        first = int(np.argmax(ranked)) + 1
        total += 1.0 / first if first <= 10 else 0.0
    return total / len(groups) if groups else 0.0


def corpus_key(documents: Sequence[Document], model: str) -> str:
    """What the reranker depends on: every non-thread document, the model, this code."""
    return content_hash(
        TRAINING_VERSION,
        model,
        *(d.content_hash for d in documents if d.kind != THREAD_KIND),
    )


def train_reranker(
    index: LoadedIndex,
    documents: Sequence[Document],
    encoder: Encoder,
    *,
    params: SearchParams | None = None,
    seed: int = 0,
) -> Reranker | None:
    """Mine queries, learn the reranker, report held-out MRR; None when the corpus is too thin."""
    p = params or SearchParams()
    queries = learning_queries(mine_queries(documents))
    groups = training_groups(index, queries, encoder.encode, p)
    if len(groups.train) < MIN_QUERIES:
        return None
    model = fit_pairwise(groups.train, seed=seed)
    info: dict[str, Any] = dict(model.info)
    info.update(
        {
            "corpus": corpus_key(documents, index.model),
            "mined_queries": len(queries),
            "held_out_queries": len(groups.held_out),
            "held_out_mrr_first_stage": round(_mrr(groups.held_out, None), 4),
            "held_out_mrr_reranked": round(_mrr(groups.held_out, model.score), 4),
        }
    )
    return Reranker(
        model.weights, model.mean, model.scale, model.features, tuple(sorted(info.items()))
    )
