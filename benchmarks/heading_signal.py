"""Would "the top chunk's heading paraphrases the question" make the confidence better?

The README example's top chunk is the FAQ entry headed "How can I interrupt training when the
validation loss isn't decreasing anymore?", a near-paraphrase of the question, yet its
confidence is low. This script measures the signal that describes that case: the cosine of
the question with the last part of the top hit's section path (a guide or FAQ heading, an
argument's name, an API page's title).

1. prints that cosine for the README example and the dev questions (top page right, wrong,
   unanswerable);
2. learns the confidence the way ``index build`` does (the corpus' mined questions, each
   scored by a reranker of the other folds, weights >= 0), once with the shipped signals and
   once with this one added, and reports the synthetic held-out AUC, the learnt weights, the
   dev AUC and coverage curve (dev questions only scored, never fitted on) and the README
   example's confidence.

The build's own row code runs unchanged; the script wraps the two functions it calls (the
search, to see the query vector, and the signals, to add the column) instead of copying it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    HelpFormatter,
    add_common_args,
    add_corpus_args,
    corpus_documents,
    machine_info,
    machine_markdown,
    markdown_table,
    progress,
    run_main,
    run_started,
    setup,
    write_json,
)

README_EXAMPLE = "How do I stop training when the validation loss stops improving?"
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def heading(section: str) -> str:
    """The last part of a chunk's section path: the words a reader sees above the match."""
    return section.rsplit(" > ", 1)[-1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a built full-corpus index")
    add_corpus_args(parser)
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup(args)
    started = run_started()

    from bot.evaluation.questions import (
        choose_threshold,
        coverage_curve,
        first_hit_rank,
        load_questions,
    )
    from bot.retrieval import confidence as conf
    from bot.retrieval import search as S
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.index import load_index
    from index_builder import confidence_training as ct
    from index_builder.reranker_training import mine_queries

    index = load_index(args.data_dir / "indexes")
    encoder = Encoder(index.model, device=args.device)
    params = S.SearchParams()
    retriever = S.Retriever(index, encoder, params)  # only for its query vector
    heading_vectors: dict[str, np.ndarray] = {}
    current: dict[str, np.ndarray] = {}  # the query vector of the search in progress

    def heading_cosine(hits: Sequence[Any]) -> float:
        text = heading(hits[0].section)
        if text not in heading_vectors:
            heading_vectors[text] = encoder.encode([text])[0]
        return max(0.0, float(heading_vectors[text] @ current["qv"]))

    def searching(index: Any, query: str, qv: np.ndarray, **kw: Any) -> Any:
        current["qv"] = qv
        return S.search(index, query, qv, **kw)

    def signals(hits: Sequence[Any], names: Sequence[str], terms: frozenset[str]) -> np.ndarray:
        return np.append(conf.confidence_features(hits, names, terms), heading_cosine(hits))

    progress(args, "mining and scoring the corpus' questions (the build's rows + 1 column)")
    documents = corpus_documents(args.docs_dir)
    queries = mine_queries(documents)
    ct.search, ct.confidence_features = searching, signals  # type: ignore[assignment]
    rows = ct.confidence_rows(
        index,
        queries,
        encoder.encode,
        params,
        copies=ct.verbatim_copies([q for q in queries if q.origin in ct.ROW_ORIGINS], documents),
    )

    progress(args, "scoring the dev questions")
    dev: list[tuple[np.ndarray, int | None, bool, str]] = []
    for q in [*load_questions(args.questions), None]:
        text = README_EXAMPLE if q is None else q.question
        qv = retriever.query_vector(text)
        current["qv"] = qv
        result = S.search(index, text, qv, k=10, params=params)
        x = signals(result.hits, ct.LEARNT_SIGNALS, ct._query_terms(text))
        if q is None:
            example = x
            continue
        answerable = bool(q.answerable and q.relevant)
        relevant = tuple(index.canonical_id(r) for r in q.relevant)
        ids = [h.doc_id for h in result.hits][:10]
        rank = first_hit_rank(ids, relevant) if answerable else None
        kind = "unanswerable" if not answerable else ("right" if rank == 1 else "wrong")
        dev.append((x, rank, answerable, kind))

    cosines: list[list[Any]] = [["README example", 1, f"{example[-1]:.3f}", f"{example[-1]:.3f}"]]
    for kind in ("right", "wrong", "unanswerable"):
        c = [x[-1] for x, _, _, k in dev if k == kind]
        cosines.append(
            [
                f"dev, top page {kind}" if kind != "unanswerable" else "dev, unanswerable",
                len(c),
                f"{np.median(c):.3f}",
                f"{max(c):.3f}",
            ]
        )

    signal_sets = {
        "shipped signals": ct.LEARNT_SIGNALS,
        "+ heading": (*ct.LEARNT_SIGNALS, "heading"),
    }
    table: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    dy = [r == 1 for _, r, _, _ in dev]
    for name, names in signal_sets.items():
        cols = list(range(len(names)))
        sub = [replace(r, features=r.features[cols]) for r in rows]
        held = ct.held_out_scores(sub, signals=names)
        y = np.asarray([r.right for r in sub])
        model = conf.fit_confidence(
            np.asarray([r.features for r in sub]),
            y,
            l2=ct.L2,
            signals=names,
            weight=ct.row_weights(sub),
            standardise=True,
            monotone=ct.MONOTONE,
        )
        scores = [model.probability(x[cols]) for x, _, _, _ in dev]
        curve = coverage_curve([(s, r, a) for s, (_, r, a, _) in zip(scores, dev, strict=True)])
        chosen = choose_threshold(curve)
        weights = dict(zip(names, (round(float(w), 3) for w in model.weights), strict=True))
        readme = model.probability(example[cols])
        table.append(
            [
                name,
                f"{conf.auc(held.tolist(), y.tolist()):.3f}",
                f"{conf.auc(scores, dy):.3f}",
                "none" if chosen is None else f"{chosen.threshold:.2f} / {chosen.replied:.2f}",
                f"{readme:.3f}",
                ", ".join(f"{k} {v}" for k, v in weights.items()),
            ]
        )
        results.append(
            {
                "signals": list(names),
                "weights": weights,
                "readme_example": readme,
                "curve": [p.to_json() for p in curve if p.threshold in THRESHOLDS],
            }
        )
    print(machine_markdown(machine_info(args.device, started)))
    print()
    print(markdown_table(["questions", "n", "heading cosine median", "max"], cosines))
    print()
    headers = [
        "signals",
        "synthetic held-out AUC",
        "dev AUC",
        "rule: threshold / replied",
        "README example",
        "learnt weights",
    ]
    print(markdown_table(headers, table))
    write_json(args.json, {"cosines": cosines, "results": results})
    return 0


if __name__ == "__main__":
    run_main(main)
