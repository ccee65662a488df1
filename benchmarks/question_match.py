"""Where to draw "the user asks a question the docs already ask" (``bot.retrieval.question_match``).

A question that paraphrases a docs question heading (the FAQ's "How can I interrupt training
when the validation loss isn't decreasing anymore?") gets that section first and a confidence of
at least the cosine. This script measures the cut-off and what the rule changes, on a built
full-corpus index:

1. **the corpus' unrelated pairs**: every text the corpus gives as a question (link sentences,
   FAQ headings, section headings, intro lines, API summaries; ``query_families``) against
   every question heading of *another* page: percentiles, how many reach each cut-off, and the
   pairs over the lowest one, to read whether they are the same question in other words;
2. **probes**: everyday questions, some paraphrasing a docs question, some only near one:
   the heading each matches, its cosine, and the confidence with and without the rule;
3. **the dev questions** (only scored): how many match at each cut-off and whether their top
   page is right, the eval numbers with the rule on and off, and the answer path's latency
   both ways (interleaved, one run).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
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
    summarize,
    write_json,
)

CUTOFFS = (0.70, 0.75, 0.80, 0.85, 0.90)
SHOWN_FROM = 0.75  # unrelated pairs from this cosine up are listed, to be read
PROBES = (
    "How do I stop training when the validation loss stops improving?",
    "How do I stop training when the validation accuracy stops improving?",
    "How do I freeze the first layers of a pretrained model for fine-tuning?",
    "Is Keras 3 compatible with Keras 2?",
    "What is the difference between predict and call?",
    "Why is my validation loss much higher than my training loss?",
    "How do I train on several GPUs?",
    "How do I resume training after my program crashed?",
    "How can I use pre-trained word embeddings in Keras?",
    "Where does keras store downloaded datasets?",
    "How do I shuffle the data in fit()?",
    "What is the difference between predict and evaluate?",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a built full-corpus index")
    parser.add_argument("--repeats", type=int, default=3, help="latency passes over dev, each way")
    add_corpus_args(parser)
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup(args)
    started = run_started()

    from bot.evaluation.questions import evaluate, load_questions
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.index import load_index
    from bot.retrieval.question_match import best_question_match, question_heading
    from bot.retrieval.search import Retriever
    from bot.settings import load_settings
    from index_builder.query_families import intro_queries, section_queries, summary_queries
    from index_builder.reranker_training import mine_queries

    index = load_index(args.data_dir / "indexes")
    encoder = Encoder(index.model, device=args.device)
    on = Retriever(index, encoder)
    off = on.with_params(question_match_cosine=1.01)
    bar = on.params.question_match_cosine
    threshold = load_settings().reply_threshold

    progress(args, "question headings and the corpus' own questions")
    pages: dict[str, set[str]] = {}
    for row, chunk in enumerate(index.chunks):
        if (heading := question_heading(chunk.section)) is not None:
            pages.setdefault(heading, set()).add(index.docs[int(index.chunk_doc[row])].doc_id)
    headings = sorted(pages)
    heading_vectors = encoder.encode(headings)
    documents = corpus_documents(args.docs_dir)
    texts = [
        *mine_queries(documents),
        *section_queries(documents),
        *intro_queries(documents),
        *summary_queries(documents),
    ]
    cos = encoder.encode([t.text for t in texts]) @ heading_vectors.T
    own = np.asarray(
        [
            [t.source in pages[h] or bool(set(t.relevant) & pages[h]) for h in headings]
            for t in texts
        ]
    )
    unrelated = cos[~own]
    shown = sorted(
        (
            (float(cos[i, j]), texts[i].text, headings[j])
            for i, j in zip(*np.nonzero((cos >= SHOWN_FROM) & ~own), strict=True)
        ),
        reverse=True,
    )
    null_rows = [
        [f"{p}th percentile", f"{np.percentile(unrelated, p):.3f}"] for p in (99, 99.9, 99.99)
    ]
    null_rows += [["max", f"{unrelated.max():.3f}"]]
    null_rows += [[f"pairs ≥ {c:.2f}", int((unrelated >= c).sum())] for c in CUTOFFS]

    progress(args, "probes")
    probe_rows = []
    for q in PROBES:
        with_rule, without = on.search(q, k=10), off.search(q, k=10)
        probe_rows.append(
            [
                q,
                with_rule.matched_question or "-",
                with_rule.hits[0].doc_id,
                f"{without.confidence:.2f} → {with_rule.confidence:.2f}",
            ]
        )

    progress(args, "dev questions")
    questions = load_questions(args.questions)
    best: list[tuple[float, bool | None]] = []  # per question: best heading cosine, top-1 right
    for q in questions:
        found = off.search(q.question, k=10)
        # The rule's own matcher with no bar: the closest question heading it would consider.
        closest = best_question_match(
            [h.section for h in found.hits],
            [h.kind for h in found.hits],
            on.query_vector(q.question),
            on.heading_vector,
            min_cosine=-1.0,
        )
        right = (
            index.canonical_id(found.hits[0].doc_id) in {index.canonical_id(r) for r in q.relevant}
            if q.answerable and q.relevant
            else None
        )
        best.append((closest.cosine if closest else 0.0, right))
    dev_rows = [
        [
            f"{c:.2f}",
            sum(b >= c for b, _ in best),
            sum(b >= c and r is True for b, r in best),
            sum(b >= c and r is None for b, r in best),
        ]
        for c in CUTOFFS
    ]

    def ask(retriever: Any) -> Any:
        def answer(text: str) -> tuple[list[str], float]:
            result = retriever.search(text, k=10)
            return [h.doc_id for h in result.hits], result.confidence

        return answer

    reports = {
        name: evaluate(
            questions, ask(r), mode=name, threshold=threshold, canonical=index.canonical_id
        )
        for name, r in (("rule on", on), ("rule off", off))
    }
    eval_rows = [
        [
            name,
            f"{rep.recall_at_1:.3f}",
            f"{rep.mrr_at_10:.3f}",
            f"{rep.replied:.2f}",
            f"{rep.reply_precision or 0:.2f}",
            f"{rep.unanswerable_below_threshold or 0:.2f}",
        ]
        for name, rep in reports.items()
    ]

    progress(args, "latency")
    seconds: dict[str, list[float]] = {"rule on": [], "rule off": []}
    for _ in range(args.repeats):
        for q in questions:
            for name, r in (("rule on", on), ("rule off", off)):
                t = time.perf_counter()
                r.search(q.question, k=10)
                seconds[name].append(time.perf_counter() - t)
    timing = {name: summarize(s) for name, s in seconds.items()}

    print(machine_markdown(machine_info(args.device, started)))
    print(f"\n{len(headings)} question headings; {len(texts)} corpus questions; bar {bar:.2f}\n")
    print(markdown_table(["unrelated pairs (other page)", "cosine / count"], null_rows))
    print()
    print(
        markdown_table(
            ["cosine", "corpus text", "question heading of another page"],
            [[f"{c:.3f}", t[:90], h[:80]] for c, t, h in shown],
        )
    )
    print()
    print(markdown_table(["probe", "matched docs question", "top page", "confidence"], probe_rows))
    print()
    print(
        markdown_table(["dev: cut-off", "matched", "of them top-1 right", "unanswerable"], dev_rows)
    )
    print()
    print(
        markdown_table(
            [
                f"dev (threshold {threshold:.2f})",
                "R@1",
                "MRR@10",
                "replied",
                "top-1 right",
                "unans. quiet",
            ],
            eval_rows,
        )
    )
    print()
    print(
        markdown_table(
            ["answer path (search, dev questions)", "p50 ms", "p99 ms"],
            [[name, f"{t['p50_ms']:.1f}", f"{t['p99_ms']:.1f}"] for name, t in timing.items()],
        )
    )
    write_json(
        args.json,
        {
            "unrelated": null_rows,
            "shown": shown,
            "probes": probe_rows,
            "dev": dev_rows,
            "eval": eval_rows,
            "timing": timing,
        },
    )
    return 0


if __name__ == "__main__":
    run_main(main)
