"""Per-query latency: bare query embedding vs the bot's full answer path.

For each query, interleaved (the order alternates so neither path always runs first):

* bare  — ``encoder.encode([text])`` on exactly the text ``Retriever.search`` would encode
          (``clean_query`` -> ``dense_query_text``);
* full  — ``Retriever.search(query)`` (embed + hybrid search) + ``compose_reply(...)``,
          the work behind one suggested reply.

A second pass, with the query vectors from the first, times the search alone (hybrid,
dense-only, lexical-only; no encoding) and ``compose_reply`` alone, as a breakdown.

Goal: full p50 <= 1.5 x bare p50 (retrieval and reply add at most half the cost of the
embedding the query needs anyway).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    SHARED,
    HelpFormatter,
    add_common_args,
    machine_info,
    machine_markdown,
    markdown_table,
    progress,
    ratio,
    run_main,
    run_started,
    setup,
    summarize,
    verdict,
    write_json,
)

GOAL_RATIO = 1.5
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].rstrip(".")
        + ". Loads the published index and the encoder once, then times each query.",
        epilog="Prints a Markdown table to stdout. Example: python benchmarks/query_latency.py "
        "--data-dir data --json /tmp/query_latency.json",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO / "data",
        help="data dir whose indexes/CURRENT is the index to query",
    )
    parser.add_argument(
        "--questions",
        type=Path,
        default=SHARED / "eval" / "questions-dev.jsonl",
        help="questions JSONL (field 'question'); cycled with variants up to --min-queries",
    )
    parser.add_argument(
        "--min-queries", type=int, default=200, help="number of timed queries (at least 1)"
    )
    parser.add_argument(
        "--warmup", type=int, default=10, help="untimed queries through every path first"
    )
    parser.add_argument("--k", type=int, default=10, help="documents retrieved per query")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the (deterministic) query order shuffle"
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.min_queries < 1:
        parser.error("--min-queries must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


# -- queries ---------------------------------------------------------------------------------------


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    return _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""


def variants(question: str) -> list[str]:
    """Deterministic variants of one chat question (title = its first line)."""
    title, _, body = question.strip().partition("\n")
    title = title.strip()
    first = _first_sentence(body) or title
    return [
        question,  # as asked
        title,  # title only
        first,  # first sentence of the body only
        f"{question} in keras 3",
        f"{title} in keras 3",
        question.lower(),
    ]


VARIANT_KINDS = (
    "original",
    "title",
    "first sentence",
    "+ in keras 3",
    "title + in keras 3",
    "lower",
)


def query_pool(questions: list[str]) -> list[tuple[str, str]]:
    """(kind, text), distinct texts: round 0 = the questions as asked, round r = every
    question's r-th variant. Deterministic."""
    per_question = [variants(q) for q in questions]
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for r, kind in enumerate(VARIANT_KINDS):
        for vs in per_question:
            text = vs[r].strip()
            if text and text not in seen:
                seen.add(text)
                out.append((kind, text))
    if not out:
        raise SystemExit("no non-empty questions")
    return out


def build_queries(
    questions: list[str], n: int, warmup: int, seed: int
) -> tuple[list[str], list[str], dict[str, int]]:
    """(timed, warm-up, kinds of the timed queries).

    The timed queries are the first ``n`` of the pool taken round by round (all questions as
    asked first, then their titles, ...), cycling with repeats only when every variant is
    used; shuffled with a fixed seed so variants and repeats spread over the run. Warm-up
    queries are the next ``warmup`` of the pool.
    """
    import random

    pool = query_pool(questions)
    picked = [pool[i % len(pool)] for i in range(n + warmup)]
    timed = picked[:n]
    kinds: dict[str, int] = {}
    for i, (kind, _) in enumerate(timed):
        key = kind if i < len(pool) else "repeat"
        kinds[key] = kinds.get(key, 0) + 1
    random.Random(seed).shuffle(timed)
    return [t for _, t in timed], [t for _, t in picked[n:]], kinds


# -- benchmark -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bot.answering.reply import compose_reply
    from bot.evaluation.questions import load_questions
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.index import load_index
    from bot.retrieval.search import Retriever, clean_query, dense_query_text, search
    from bot.settings import load_settings

    settings = load_settings(data_dir=args.data_dir, device=args.device)
    questions = [q.question for q in load_questions(args.questions)]
    progress(args, f"{len(questions)} questions from {args.questions}")

    t0 = time.perf_counter()
    index = load_index(settings.index_root)
    load_index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    encoder = Encoder(index.model, device=settings.device, batch_size=settings.embed_batch_size)
    load_model_s = time.perf_counter() - t0
    retriever = Retriever(index, encoder)
    params = retriever.params
    progress(args, f"index {index.version}: {len(index.docs)} docs, {len(index.chunks)} chunks")

    queries, warm, kinds = build_queries(questions, args.min_queries, args.warmup, args.seed)

    def dense_text(query: str) -> str:
        # Exactly what Retriever.search encodes.
        prose, code = clean_query(query)
        return dense_query_text(prose, code, max_words=params.dense_query_words) or query[:500]

    def full(query: str) -> Any:
        result = retriever.search(query, k=args.k)
        return compose_reply(
            result,
            threshold=settings.reply_threshold,
            max_sources=settings.max_sources,
            index_version=index.version,
            chunks=index.chunk_texts,
        )

    def breakdown_ops(query: str, vector: Any) -> list[tuple[str, Any]]:
        def run_search(mode: Any, vec: Any, p: Any = params) -> Callable[[], Any]:
            return lambda: search(index, query, vec, mode=mode, k=args.k, params=p)

        return [
            ("hybrid", run_search("hybrid", vector)),
            # The first stage alone: what hybrid search cost before the reranker.
            ("fusion", run_search("hybrid", vector, replace(params, rerank_candidates=0))),
            ("dense", run_search("dense", vector)),
            ("lexical", run_search("lexical", None)),
        ]

    progress(args, f"warm-up: {len(warm)} queries")
    for q in warm:
        vec = encoder.encode([dense_text(q)])[0]
        full(q)
        for _, op in breakdown_ops(q, vec):
            op()

    # Pass 1: bare vs full, interleaved; the order flips every query.
    progress(args, f"pass 1: {len(queries)} queries, bare encode vs full path")
    bare_s: list[float] = []
    full_s: list[float] = []
    vectors: list[Any] = []
    would_reply = 0
    for i, q in enumerate(queries):
        text = dense_text(q)
        for step in ("bare", "full") if i % 2 == 0 else ("full", "bare"):
            if step == "bare":
                t0 = time.perf_counter()
                vec = encoder.encode([text])[0]
                bare_s.append(time.perf_counter() - t0)
                vectors.append(vec)
            else:
                t0 = time.perf_counter()
                reply = full(q)
                full_s.append(time.perf_counter() - t0)
                would_reply += reply.would_reply

    # Pass 2: the parts, with the vectors from pass 1 (no encoding), order rotating.
    progress(args, "pass 2: search without encoding, and compose_reply alone")
    parts: dict[str, list[float]] = {
        "hybrid": [],
        "fusion": [],
        "dense": [],
        "lexical": [],
        "compose": [],
        "compose_plain": [],
    }
    with_code = 0
    for i, (q, vec) in enumerate(zip(queries, vectors, strict=True)):
        ops = breakdown_ops(q, vec)
        ops = ops[i % len(ops) :] + ops[: i % len(ops)]
        hybrid_result = None
        for name, op in ops:
            t0 = time.perf_counter()
            result = op()
            parts[name].append(time.perf_counter() - t0)
            if name == "hybrid":
                hybrid_result = result
        # With the code example (what the bot does) and without it (the reply before code
        # examples existed), alternating which goes first.
        for name in ("compose", "compose_plain") if i % 2 == 0 else ("compose_plain", "compose"):
            t0 = time.perf_counter()
            reply = compose_reply(
                hybrid_result,
                threshold=settings.reply_threshold,
                max_sources=settings.max_sources,
                index_version=index.version,
                chunks=index.chunk_texts,
                snippet=name == "compose",
            )
            parts[name].append(time.perf_counter() - t0)
            if name == "compose":
                with_code += any(s.snippet for s in reply.sources)

    bare = summarize(bare_s)
    full_stats = summarize(full_s)
    r = ratio(full_stats["p50_ms"], bare["p50_ms"])
    return {
        "benchmark": "query_latency",
        "index": {
            "data_dir": str(args.data_dir),
            "version": index.version,
            "model": index.model,
            "documents": len(index.docs),
            "chunks": len(index.chunks),
            "dense_index": index.manifest.get("dense_index"),
            "sources": index.manifest.get("sources"),
        },
        "setup": {
            "questions_file": str(args.questions),
            "questions": len(questions),
            "queries_timed": len(queries),
            "warmup_queries": len(warm),
            "query_kinds": kinds,
            "k": args.k,
            "device": encoder.device,
            "batch_size": encoder.batch_size,
            "load_index_s": load_index_s,
            "load_model_s": load_model_s,
            "would_reply_share": would_reply / len(queries),
            "code_example_share": with_code / len(queries),
        },
        "results": {
            "bare_encode": bare,
            "full_path": full_stats,
            "hybrid_search_no_encode": summarize(parts["hybrid"]),
            "fusion_search_no_encode": summarize(parts["fusion"]),
            "dense_search_no_encode": summarize(parts["dense"]),
            "lexical_search_no_encode": summarize(parts["lexical"]),
            "compose_reply": summarize(parts["compose"]),
            "compose_reply_no_code": summarize(parts["compose_plain"]),
        },
        "checks": {
            "full_over_bare_p50": r,
            "goal": GOAL_RATIO,
            "pass": bool(r <= GOAL_RATIO),
        },
        "samples_ms": {
            "bare_encode": [s * 1000 for s in bare_s],
            "full_path": [s * 1000 for s in full_s],
        },
    }


def report(data: dict[str, Any]) -> str:
    res = data["results"]
    idx = data["index"]
    setup_ = data["setup"]
    labels = [
        ("bare_encode", "bare `encoder.encode([text])`"),
        ("full_path", "full: `Retriever.search` + `compose_reply`"),
        ("hybrid_search_no_encode", "breakdown: hybrid search + rerank, no encode"),
        ("fusion_search_no_encode", "breakdown: hybrid search without the reranker, no encode"),
        ("dense_search_no_encode", "breakdown: dense-only search, no encode"),
        ("lexical_search_no_encode", "breakdown: lexical-only search, no encode"),
        ("compose_reply", "breakdown: `compose_reply` alone (with the code example)"),
        ("compose_reply_no_code", "breakdown: `compose_reply` alone, no code example"),
    ]
    rows = [
        (label, res[key]["n"], res[key]["p50_ms"], res[key]["p99_ms"], res[key]["mean_ms"])
        for key, label in labels
    ]
    checks = data["checks"]
    kinds = ", ".join(f"{k} {v}" for k, v in setup_["query_kinds"].items())
    out = [
        "## Query latency",
        "",
        machine_markdown(data["machine"]),
        "",
        f"Index `{idx['version']}` ({idx['documents']:,} documents, {idx['chunks']:,} chunks, "
        f"{idx['dense_index'] or 'dense'} index, model `{idx['model']}`); "
        f"{setup_['queries_timed']} timed queries after {setup_['warmup_queries']} warm-up "
        f"({setup_['questions']} questions and variants: {kinds}); "
        f"k = {setup_['k']}. "
        f"Model load {setup_['load_model_s']:.1f} s, index load {setup_['load_index_s']:.1f} s "
        "(not in the timings).",
        "",
        markdown_table(("path", "n", "p50 ms", "p99 ms", "mean ms"), rows),
        "",
        f"{setup_['code_example_share']:.0%} of the replies carry a code example.",
        "",
        markdown_table(
            ("check", "measured", "goal", "result"),
            [
                (
                    "full p50 / bare p50",
                    f"{checks['full_over_bare_p50']:.2f}x",
                    f"<= {checks['goal']}x",
                    verdict(checks["pass"]),
                )
            ],
        ),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup(args)
    started = run_started()
    data = run(args)
    data["machine"] = machine_info(data["setup"]["device"], started)
    print(report(data))
    write_json(args.json, data)
    return 0


if __name__ == "__main__":
    run_main(main)
