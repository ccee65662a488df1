"""Reranker ablation: training data, regularisation and cut, judged on synthetic questions.

Loads the published index and the documents it was built from once, mines four families of
synthetic questions (``index_builder.query_families``: link/symbol/FAQ sentences — what the
build trains on —, guide and example section headings, their intro lines, API summary
lines), runs the real first stage for each, and for every variant learns the reranker
five times (5-fold cross-validation split by source page) and scores each question with the
model that did not see its page. Reported per family: MRR@10 of the first stage → reranked,
R@1 reranked. With ``--dev FILE`` each variant's fold-0 model (the one the build would ship:
trained on the four other folds) also ranks the labelled questions, for a look *after* the
choice; choose on the synthetic columns.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bot.corpus.documents import Document  # noqa: E402
from bot.evaluation.questions import first_hit_rank, load_questions  # noqa: E402
from bot.retrieval import search as S  # noqa: E402
from bot.retrieval.encoder import Encoder  # noqa: E402
from bot.retrieval.index import LoadedIndex, load_index  # noqa: E402
from bot.retrieval.rerank import Reranker, fit_pairwise  # noqa: E402
from bot.retrieval.text import clean_query, lexical_tokens  # noqa: E402
from index_builder import query_families as qf  # noqa: E402
from index_builder.reranker_training import TrainingQuery, mine_queries  # noqa: E402

FOLDS = 5
EVAL_DEPTH = 50  # each question is ranked over the first stage's top 50; the cut is re-ordered


@dataclass(frozen=True)
class Variant:
    name: str
    train: tuple[str, ...] = ("link",)  # families the reranker learns from
    limits: tuple[tuple[str, int], ...] = ()  # at most this many training queries of a family
    l2: float = 1.0
    cut: int = 30
    crossed: bool = False  # + each continuous feature × each page kind (45 more weights)
    extra: tuple[str, ...] = ()  # + features of EXTRA_FEATURES
    # which mined sentences of the link family it learns from (reranker_training's origins)
    origins: tuple[str, ...] = ("link", "heading", "symbol")


VARIANTS: tuple[Variant, ...] = (
    Variant("before: link/symbol/FAQ sentences, L2 1, cut 30 (the rows below change this)"),
    Variant("L2 10", l2=10.0),
    Variant("cut 15", cut=15),
    Variant("+ intro and summary lines", train=("link", "intro", "summary")),
    Variant(
        "+ intro, summary, 300 section headings",
        train=qf.FAMILIES,
        limits=(("section", 300),),
    ),
    Variant("+ all section headings", train=qf.FAMILIES),
    Variant("+ section-heading overlap feature", extra=("section_overlap",)),
    Variant("+ class-member page feature", extra=("member",)),
    Variant(
        "shipped: link and FAQ sentences only (no backticked-symbol ones)",
        origins=("link", "heading"),
    ),
    Variant(
        "prose sentences only, + section-heading overlap feature",
        extra=("section_overlap",),
        origins=("link", "heading"),
    ),
    Variant(
        "prose sentences only, + intro and summary lines",
        train=("link", "intro", "summary"),
        origins=("link", "heading"),
    ),
    Variant("page-kind × feature crosses", crossed=True),
    Variant(
        "page-kind crosses + intro, summary, 300 sections",
        train=qf.FAMILIES,
        limits=(("section", 300),),
        crossed=True,
    ),
)

_CONTINUOUS = (0, 1, 2, 3, 6, 7, 8, 14, 15)  # the FEATURES that are not page-kind flags
_KINDS = slice(9, 14)


def section_overlap(index: LoadedIndex, doc: int, query_terms: frozenset[str]) -> float:
    """The best share of a section heading's terms (2 or more) that the question contains:
    "how do I freeze layers" names most of "Freezing layers: the trainable attribute"."""
    best = 0.0
    for row in index.doc_chunks(doc).tolist():
        section = index.chunks[row].section
        terms = frozenset(lexical_tokens(section.rsplit(" > ", 1)[1])) if " > " in section else ()
        if len(terms) >= 2:
            best = max(best, len(terms & query_terms) / len(terms))
    return best


def member(index: LoadedIndex, doc: int, query_terms: frozenset[str]) -> float:
    """1 for an API page of a class member (``keras.Model.fit``), else 0."""
    info = index.docs[doc]
    parent = index.doc_rows.get(info.doc_id.rsplit(".", 1)[0])
    return float(info.kind == "api" and parent is not None and index.docs[parent].kind == "api")


EXTRA_FEATURES: dict[str, Callable[[LoadedIndex, int, frozenset[str]], float]] = {
    "section_overlap": section_overlap,
    "member": member,
}


def cross(x: np.ndarray) -> np.ndarray:
    kinds, cont = x[:, _KINDS], x[:, list(_CONTINUOUS)]
    return np.hstack([x] + [kinds[:, [k]] * cont for k in range(kinds.shape[1])])


def variant_features(q: Question, variant: Variant) -> np.ndarray:
    """The feature rows a variant's reranker sees for the first stage's top ``cut``."""
    x = q.x[: variant.cut]
    if variant.crossed:
        x = cross(x)
    extra = [q.extra[name][: variant.cut, None] for name in variant.extra]
    return np.hstack([x, *extra]) if extra else x


@dataclass
class Question:
    query: TrainingQuery
    family: str
    fold: int
    x: np.ndarray  # features of the first stage's top EVAL_DEPTH (no threads, not the source)
    extra: dict[str, np.ndarray]  # each of EXTRA_FEATURES for the same rows
    y: np.ndarray  # which of them are right


QUERY = TrainingQuery("", ("",), "", "dev")  # placeholder: the dev path needs no query


@dataclass
class Scores:
    first: list[float] = field(default_factory=list)
    reranked: list[float] = field(default_factory=list)
    top1: list[bool] = field(default_factory=list)


def reciprocal_rank(y: np.ndarray) -> float:
    hits = np.flatnonzero(y[:10])
    return 1.0 / (int(hits[0]) + 1) if hits.size else 0.0


def reorder(y: np.ndarray, scores: np.ndarray, cut: int) -> np.ndarray:
    """``y`` with its first ``cut`` entries sorted by score (ties keep their order)."""
    head = np.lexsort((np.arange(min(cut, len(y))), -scores))
    return np.concatenate([y[:cut][head], y[cut:]])


def families(documents: Sequence[Document]) -> dict[str, list[TrainingQuery]]:
    return {
        "link": mine_queries(documents),
        "section": qf.section_queries(documents),
        "intro": qf.intro_queries(documents),
        "summary": qf.summary_queries(documents),
    }


def first_stages(
    index: LoadedIndex,
    mined: dict[str, list[TrainingQuery]],
    encode: Callable[[list[str]], np.ndarray],
    params: S.SearchParams,
) -> list[Question]:
    out: list[Question] = []
    for family, queries in mined.items():
        texts = [
            S.dense_query_text(*clean_query(q.text), max_words=params.dense_query_words)
            or q.text[:500]
            for q in queries
        ]
        for q, qv in zip(queries, encode(texts), strict=True):
            stage = S.first_stage(index, q.text, qv, params=params)
            if (source := index.doc_rows.get(q.source)) is not None:
                stage.fused.pop(source, None)  # a sentence matches its own page verbatim
            order = S.order_by_score(stage.fused)
            head = [d for d in order if index.docs[d].kind != S.THREAD_KIND][:EVAL_DEPTH]
            wanted = {index.doc_rows[r] for r in q.relevant if r in index.doc_rows}
            y = np.array([d in wanted for d in head], dtype=bool)
            if y.any():
                x = S.rerank_features(index, stage, head, qv, params)
                extra = {
                    name: np.array([f(index, d, stage.query_terms) for d in head])
                    for name, f in EXTRA_FEATURES.items()
                }
                out.append(Question(q, family, qf.fold(q), x, extra, y))
    return out


def fit(questions: Sequence[Question], variant: Variant, held_out_fold: int) -> Reranker:
    limits = dict(variant.limits)
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    for family in variant.train:
        usable = [
            q
            for q in questions
            if q.family == family and q.fold != held_out_fold and not q.y[: variant.cut].all()
            if family != "link" or q.query.origin in variant.origins
        ]
        usable = [q for q in usable if q.y[: variant.cut].any()]
        if (limit := limits.get(family)) and len(usable) > limit:
            step = len(usable) / limit
            usable = [usable[int(i * step)] for i in range(limit)]
        groups.extend((variant_features(q, variant), q.y[: variant.cut]) for q in usable)
    return fit_pairwise(groups, l2=variant.l2, seed=0)


def cross_validate(
    questions: Sequence[Question], variant: Variant
) -> tuple[dict[str, Scores], Reranker]:
    scores = {f: Scores() for f in COLUMNS}
    shipped: Reranker | None = None
    for k in range(FOLDS):
        model = fit(questions, variant, k)
        shipped = shipped or model  # fold 0 held out: what the build would learn
        for q in questions:
            if q.fold != k:
                continue
            ranked = reorder(q.y, model.score(variant_features(q, variant)), variant.cut)
            for column in (q.family, _part(q)):
                s = scores[column]
                s.first.append(reciprocal_rank(q.y))
                s.reranked.append(reciprocal_rank(ranked))
                s.top1.append(bool(ranked[0]))
    assert shipped is not None
    return scores, shipped


#: The families, and the link family's two parts: sentences that describe the task and link
#: its page or are the FAQ's questions ("prose", the way users ask), and sentences that name
#: their answer in backticks ("symbol").
COLUMNS: tuple[str, ...] = (*qf.FAMILIES, "link: prose", "link: symbol")


def _part(q: Question) -> str:
    if q.family != "link":
        return q.family
    return "link: symbol" if q.query.origin == "symbol" else "link: prose"


def dev_metrics(
    index: LoadedIndex,
    encoder: Encoder,
    dev: Path,
    model: Reranker,
    variant: Variant,
    params: S.SearchParams,
) -> dict[str, float]:
    """R@1/R@3/R@5/MRR@10 of ``model`` on the labelled questions (the bot's search path)."""
    original_features, original_model = S.rerank_features, index.reranker

    def features(
        index: LoadedIndex,
        stage: S.FirstStage,
        docs: Sequence[int],
        query_vector: np.ndarray,
        params: S.SearchParams,
    ) -> np.ndarray:
        x = original_features(index, stage, docs, query_vector, params)
        extra = {
            name: np.array([f(index, d, stage.query_terms) for d in docs])
            for name, f in EXTRA_FEATURES.items()
        }
        return variant_features(Question(QUERY, "dev", 0, x, extra, np.zeros(0)), variant)

    p = replace(params, rerank_candidates=variant.cut)
    retriever = S.Retriever(index, encoder, p)
    ranks: list[int | None] = []
    S.rerank_features = features
    index.reranker = model
    try:
        for q in load_questions(dev):
            if q.answerable:
                hits = retriever.search(q.question, k=10).hits
                ranked = [index.canonical_id(h.doc_id) for h in hits]
                ranks.append(first_hit_rank(ranked, [index.canonical_id(r) for r in q.relevant]))
    finally:
        S.rerank_features, index.reranker = original_features, original_model
    at = lambda k: float(np.mean([r is not None and r <= k for r in ranks]))  # noqa: E731
    mrr = float(np.mean([1.0 / r if r is not None and r <= 10 else 0.0 for r in ranks]))
    return {"R@1": at(1), "R@3": at(3), "R@5": at(5), "MRR@10": mrr}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a data dir with an index")
    parser.add_argument("--docs-dir", type=Path, required=True, help="the docs it was built from")
    parser.add_argument("--dev", type=Path, help="labelled questions, looked at after the choice")
    parser.add_argument(
        "--only",
        metavar="TEXT",
        help="run only the variants whose name contains TEXT (and the first)",
    )
    args = parser.parse_args(argv)

    from bot.settings import load_settings
    from index_builder.collect import collect_documents

    settings = load_settings(data_dir=args.data_dir, docs_dir=args.docs_dir)
    documents, _ = collect_documents(settings)
    index = load_index(settings.index_root)
    encoder = Encoder(index.model)
    params = S.SearchParams()
    mined = families(documents)
    print("mined: " + ", ".join(f"{f} {len(q)}" for f, q in mined.items()), file=sys.stderr)
    questions = first_stages(index, mined, encoder.encode, params)

    head = ["variant"] + [f"{f} MRR (R@1)" for f in COLUMNS] + ["mean MRR"]
    if args.dev:
        head += ["dev R@1", "dev R@3", "dev R@5", "dev MRR@10"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for i, variant in enumerate(VARIANTS):
        if i and args.only and args.only not in variant.name:
            continue
        scores, model = cross_validate(questions, variant)
        row = [variant.name]
        if i == 0:
            first = [f"{np.mean(scores[f].first):.3f}" for f in COLUMNS]
            mean_first = np.mean([np.mean(scores[f].first) for f in qf.FAMILIES])
            print(
                "| first stage only | " + " | ".join(first) + f" | {mean_first:.3f} |", flush=True
            )
        for f in COLUMNS:
            s = scores[f]
            row.append(f"{np.mean(s.reranked):.3f} ({np.mean(s.top1):.3f})")
        row.append(f"{np.mean([np.mean(scores[f].reranked) for f in qf.FAMILIES]):.3f}")
        if args.dev:
            dev = dev_metrics(index, encoder, args.dev, model, variant, params)
            row += [f"{v:.3f}" for v in dev.values()]
        print("| " + " | ".join(row) + " |", flush=True)
    counts = {f: sum(q.family == f for q in questions) for f in qf.FAMILIES}
    print("questions with a right page in the top 50: " + str(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
