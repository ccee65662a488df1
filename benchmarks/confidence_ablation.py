"""Which rows and signals the build-time confidence learns from, measured two ways.

For a built index (its reranker) and the corpus it was built from:

1. mines the corpus' questions and scores each with a reranker learnt from the other folds
   (``index_builder.confidence_training.confidence_rows``, every signal of
   ``bot.retrieval.confidence.ALL_SIGNALS``), with and without its answers removed;
2. for each variant (which mined questions become rows, which signals, how much the
   "answers removed" rows weigh) reports the **synthetic held-out AUC** (every row scored by
   a model fitted without its fold) and, for the model fitted on all rows, the **dev AUC**
   and the dev point the threshold rule picks (most replies with top-1 right >= 0.9 and
   unanswerable quiet >= 0.8). The dev questions are only scored, never fitted on.

The shipped recipe, cross-validated *on* the dev questions (``supportbot eval
--fit-confidence``), is the first row for comparison.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
    run_started,
    setup,
    write_json,
)

README_EXAMPLE = "How do I stop training when the validation loss stops improving?"


@dataclass(frozen=True)
class Variant:
    name: str
    origins: tuple[str, ...]
    signals: tuple[str, ...]
    removed_weight: float  # 0: no "answers removed" rows
    monotone: bool = False  # every weight >= 0
    #: a top page that names an answer (or is named by one) counts as right
    named_right: bool = False


def variants() -> list[Variant]:
    from bot.retrieval.confidence import ALL_SIGNALS, SIGNALS

    lh = ("link", "heading")
    every = ("link", "heading", "symbol")
    out = [
        Variant("all mined questions, shipped signals", every, SIGNALS, 0.5),
        Variant("all mined questions, all signals", every, ALL_SIGNALS, 0.5),
        Variant("link + heading questions, no 'answers removed' rows", lh, SIGNALS, 0.0),
        Variant("**link + heading, 'answers removed' at 0.5 (shipped)**", lh, SIGNALS, 0.5),
        Variant("link + heading, 'answers removed' at 1.0", lh, SIGNALS, 1.0),
        Variant("link + heading, all signals", lh, ALL_SIGNALS, 0.5),
    ]
    for extra in ALL_SIGNALS:
        if extra not in SIGNALS:
            out.append(Variant(f"link + heading, + {extra}", lh, (*SIGNALS, extra), 0.5))
    out += [
        Variant("link + heading, weights >= 0", lh, SIGNALS, 0.5, monotone=True),
        Variant("link + heading, all signals, weights >= 0", lh, ALL_SIGNALS, 0.5, True),
        Variant("all mined questions, weights >= 0", every, SIGNALS, 0.5, monotone=True),
    ]
    with_consensus = (*SIGNALS, "consensus")
    out += [
        Variant("link + heading, weights >= 0, naming pages right", lh, SIGNALS, 0.5, True, True),
        Variant("link + heading, + consensus, weights >= 0", lh, with_consensus, 0.5, True),
        Variant(
            "link + heading, + consensus, weights >= 0, naming pages right",
            lh,
            with_consensus,
            0.5,
            True,
            True,
        ),
    ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a built full-corpus index")
    add_corpus_args(parser)
    parser.add_argument("--seed", type=int, default=0)
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
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.index import load_index
    from bot.retrieval.search import Retriever, SearchParams
    from index_builder import confidence_training as ct
    from index_builder.reranker_training import mine_queries

    index = load_index(args.data_dir / "indexes")
    documents = corpus_documents(args.docs_dir)
    encoder = Encoder(index.model, device=args.device)
    params = SearchParams()
    progress(args, "mining and scoring the corpus' questions")
    queries = mine_queries(documents)
    rows = ct.confidence_rows(
        index,
        queries,
        encoder.encode,
        params,
        seed=args.seed,
        signals=conf.ALL_SIGNALS,
        origins=("link", "heading", "symbol"),
        copies=ct.verbatim_copies(queries, documents),
    )
    progress(args, "scoring the dev questions")
    questions = load_questions(args.questions)
    retriever = Retriever(index, encoder, params)
    dev_x, dev_rank, dev_answerable = [], [], []
    for q in questions:
        result = retriever.search(q.question, k=10)
        answerable = bool(q.answerable and q.relevant)
        relevant = tuple(index.canonical_id(r) for r in q.relevant)
        rank = (
            first_hit_rank([h.doc_id for h in result.hits][:10], relevant) if answerable else None
        )
        terms = ct._query_terms(q.question)
        dev_x.append(conf.confidence_features(result.hits, conf.ALL_SIGNALS, terms))
        dev_rank.append(rank)
        dev_answerable.append(answerable)
    dx = np.asarray(dev_x)
    # The README's example question: not an eval question; its score is reported, never fitted.
    example_hits = retriever.search(README_EXAMPLE, k=10).hits
    example_x = conf.confidence_features(
        example_hits, conf.ALL_SIGNALS, ct._query_terms(README_EXAMPLE)
    )
    dy = np.asarray([r == 1 for r in dev_rank])

    def dev_point(scores: Sequence[float]) -> tuple[float | None, Any]:
        curve = coverage_curve(list(zip(scores, dev_rank, dev_answerable, strict=True)))
        return conf.auc(scores, dy.tolist()), choose_threshold(curve)

    table: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    cols5 = [conf.ALL_SIGNALS.index(s) for s in conf.SIGNALS]
    cv = np.mean(
        [conf.cross_validated(dx[:, cols5], dy, folds=5, seed=s) for s in range(5)], axis=0
    )
    cv_auc, cv_point = dev_point(cv.tolist())
    table.append(
        [
            *_row("shipped recipe, 5-fold CV on dev (before)", None, cv_auc, cv_point),
            "-",
        ]
    )
    results.append({"variant": "dev-cv", "dev_auc": cv_auc})
    for v in variants():
        cols = [conf.ALL_SIGNALS.index(s) for s in v.signals]
        sub = [
            replace(
                r, features=r.features[cols], right=r.right or (v.named_right and r.names_answer)
            )
            for r in rows
            if r.origin in v.origins and (v.removed_weight > 0 or not r.removed)
        ]
        held = ct.held_out_scores(
            sub, signals=v.signals, removed_weight=v.removed_weight, monotone=v.monotone
        )
        y = np.asarray([r.right for r in sub])
        model = conf.fit_confidence(
            np.asarray([r.features for r in sub]),
            y,
            signals=v.signals,
            weight=ct.row_weights(sub, v.removed_weight),
            standardise=True,
            monotone=v.monotone,
        )
        syn_auc = conf.auc(held.tolist(), y.tolist())
        scores = [model.probability(x) for x in dx[:, cols]]
        d_auc, point = dev_point(scores)
        example = model.probability(example_x[cols])
        table.append([*_row(v.name, syn_auc, d_auc, point), f"{example:.2f}"])
        results.append(
            {
                "variant": v.name,
                "rows": len(sub),
                "synthetic_auc": syn_auc,
                "dev_auc": d_auc,
                "readme_example": example,
                "weights": dict(zip(v.signals, model.weights, strict=True)),
            }
        )
    info = machine_info(args.device, started)
    print(machine_markdown(info))
    print()
    headers = [
        "variant",
        "synthetic held-out AUC",
        "dev AUC",
        "dev threshold (rule)",
        "replied",
        "top-1 right",
        "unans. quiet",
        "README example",
    ]
    print(markdown_table(headers, table))
    write_json(args.json, {"machine": info, "results": results})
    return 0


def _row(name: str, syn: float | None, dev: float | None, point: Any) -> list[Any]:
    def r(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    if point is None:
        return [name, r(syn), r(dev), "none", "-", "-", "-"]
    return [
        name,
        r(syn),
        r(dev),
        f"{point.threshold:.2f}",
        f"{point.replied:.2f}",
        f"{point.top1_precision:.2f}",
        f"{point.unanswerable_quiet:.2f}",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
