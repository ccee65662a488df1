"""Does adapting the embedding model to the corpus help the answers? Measured end to end.

An experiment, not a product feature: it answers whether "fine-tune MiniLM on pairs the
corpus gives for free" is worth building into ``index build``.

1. Mines the corpus' training questions exactly as the reranker does
   (``index_builder.reranker_training.mine_queries``: keras.io sentences that link or name the
   page that answers them, the FAQ's question headings). Each becomes a triple: the sentence,
   the best-matching chunk of a page that answers it (under the base model) and a hard
   negative, the best-matching chunk of the first page that neither answers it nor is the
   page the sentence comes from.
2. For each ``--epochs`` value, fine-tunes the base model on those triples (in-batch and hard
   negatives, a contrastive loss over scaled cosines; seeded) and saves it as a local folder.
3. Builds a full index with each tuned model (``supportbot index build`` in a fresh data dir
   under ``--work-dir``, so the build learns its own reranker and confidence, as a real one
   would) and evaluates it and the base index on the dev questions in this one run: dense
   and hybrid retrieval, the confidence's AUC and the operating point the threshold rule
   picks, and the README example's confidence.

The dev questions are only scored. The tuned model sees every mined question, and the build
then learns its reranker from the same questions, so the build's own held-out numbers are
optimistic for the tuned rows; the dev numbers are not affected by that.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
    run_started,
    setup,
    write_json,
)

README_EXAMPLE = "How do I stop training when the validation loss stops improving?"
BATCH = 32
LEARNING_RATE = 2e-5
SCALE = 20.0  # cosines × SCALE are the logits of the contrastive loss
MAX_TOKENS = 160


def training_triples(index: Any, queries: Sequence[Any], encode: Any) -> list[tuple[str, str, str]]:
    """(question, a right page's best chunk, the best chunk of the first wrong page)."""
    vectors = index.chunk_vectors()
    out = []
    for q, v in zip(queries, encode([q.text for q in queries]), strict=True):
        right = [index.doc_rows[r] for r in q.relevant if r in index.doc_rows]
        if not right:
            continue
        chunks = np.concatenate([index.doc_chunks(r) for r in right])
        positive = int(chunks[np.argmax(vectors[chunks] @ v)])
        excluded = set(right) | {index.doc_rows.get(q.source, -1)}
        order = np.argsort(-(vectors @ v))[:50]
        negative = next((int(c) for c in order if int(index.chunk_doc[c]) not in excluded), None)
        if negative is not None:
            out.append((q.text, index.chunks[positive].text, index.chunks[negative].text))
    return out


def fine_tune(
    base: Path, triples: list[tuple[str, str, str]], epochs: int, seed: int, out: Path
) -> float:
    """Train a copy of ``base`` on ``triples`` and save it to ``out``; returns the seconds."""
    import random

    import torch
    from sentence_transformers import SentenceTransformer

    random.seed(seed)
    torch.manual_seed(seed)
    model = SentenceTransformer(str(base), device="cpu")
    model.max_seq_length = MAX_TOKENS
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    steps = epochs * -(-len(triples) // BATCH)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / steps)
    )

    def embed(texts: list[str]) -> Any:
        features = model.tokenize(texts)
        return torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)

    started = time.perf_counter()
    order = list(triples)
    for _ in range(epochs):
        random.shuffle(order)
        for i in range(0, len(order), BATCH):
            batch = order[i : i + BATCH]
            anchors = embed([t[0] for t in batch])
            passages = embed([t[1] for t in batch] + [t[2] for t in batch])
            logits = SCALE * anchors @ passages.T  # row i's positive is column i
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()
    model.save(str(out))
    return time.perf_counter() - started


def build(model: Path, data_dir: Path, docs_dir: Path) -> float:
    env = dict(os.environ, SUPPORTBOT_EMBEDDING_MODEL=str(model), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    subprocess.run(
        [
            *(sys.executable, "-m", "bot", "--data-dir", str(data_dir), "index", "build"),
            *("--docs-dir", str(docs_dir), "--no-progress"),
        ],
        env=env,
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def measure(data_dir: Path, questions: Sequence[Any], device: str | None) -> dict[str, Any]:
    """Dense and hybrid retrieval, the confidence's AUC and rule point, the README example
    (the same ``evaluate`` as ``supportbot eval``)."""
    from bot.evaluation.questions import choose_threshold, evaluate, recall_at
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.index import load_index
    from bot.retrieval.search import Mode, Retriever

    index = load_index(data_dir / "indexes")
    retriever = Retriever(index, Encoder(index.model, device=device or "auto"))
    out: dict[str, Any] = {"index": index.version}
    for mode in ("dense", "hybrid"):

        def ask(q: str, mode: Mode = mode) -> tuple[list[str], float]:
            result = retriever.search(q, mode=mode, k=10)
            return [h.doc_id for h in result.hits], result.confidence

        # The threshold only sets the report's replied share, unused here: the rule point
        # comes from the whole curve.
        report = evaluate(questions, ask, mode=mode, threshold=1.0, canonical=index.canonical_id)
        ranks = [q["rank"] for q in report.per_question if not q.get("unanswerable")]
        out[mode] = {
            "R@1": report.recall_at_1,
            "R@3": recall_at(ranks, 3),
            "MRR@10": report.mrr_at_10,
        }
        if mode == "hybrid":
            out["auc"] = report.confidence_auc()
            point = choose_threshold(report.curve())
            out["rule"] = (
                None
                if point is None
                else {
                    "threshold": point.threshold,
                    "replied": point.replied,
                    "top1": point.top1_precision,
                    "quiet": point.unanswerable_quiet,
                }
            )
            out["readme_example"] = retriever.search(README_EXAMPLE, k=10).confidence
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--base-data-dir", type=Path, required=True, help="a full-corpus index of the base model"
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="tuned models and indexes")
    add_corpus_args(parser)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--seed", type=int, default=0)
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup(args)
    started = run_started()

    from bot.evaluation.questions import load_questions
    from bot.retrieval.encoder import Encoder, resolve_model_path
    from bot.retrieval.index import load_index
    from index_builder.reranker_training import mine_queries

    base = load_index(args.base_data_dir / "indexes")
    documents = corpus_documents(args.docs_dir)
    queries = mine_queries(documents)
    encoder = Encoder(base.model, device=args.device or "auto")
    triples = training_triples(base, queries, encoder.encode)
    progress(args, f"{len(triples)} training triples from {len(queries)} mined questions")
    questions = load_questions(args.questions)

    results = [
        {"variant": f"base ({base.model})", **measure(args.base_data_dir, questions, args.device)}
    ]
    for epochs in args.epochs:
        model_dir = args.work_dir / f"model-{epochs}ep"
        data_dir = args.work_dir / f"data-{epochs}ep"
        progress(args, f"fine-tuning for {epochs} epoch(s)")
        seconds = fine_tune(resolve_model_path(base.model), triples, epochs, args.seed, model_dir)
        progress(args, f"building the full index with {model_dir}")
        build_seconds = build(model_dir, data_dir, args.docs_dir)
        results.append(
            {
                "variant": f"tuned, {epochs} epoch(s)",
                "train_seconds": seconds,
                "build_seconds": build_seconds,
                **measure(data_dir, questions, args.device),
            }
        )

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    table = []
    for r in results:
        rule = r["rule"]
        table.append(
            [
                r["variant"],
                f"{r['train_seconds']:.0f}" if "train_seconds" in r else "-",
                f(r["dense"]["R@1"]),
                f(r["dense"]["MRR@10"]),
                f(r["hybrid"]["R@1"]),
                f(r["hybrid"]["R@3"]),
                f(r["hybrid"]["MRR@10"]),
                f(r["auc"]),
                "none"
                if rule is None
                else f"{rule['threshold']:.2f}: {rule['replied']:.2f} / {rule['top1']:.2f} / "
                f"{rule['quiet']:.2f}",
                f"{r['readme_example']:.2f}",
            ]
        )
    info = machine_info(args.device, started)
    print(machine_markdown(info))
    print(f"\n{len(triples)} training triples; dev questions: {args.questions}\n")
    headers = [
        "variant",
        "train s",
        "dense R@1",
        "dense MRR@10",
        "hybrid R@1",
        "hybrid R@3",
        "hybrid MRR@10",
        "confidence AUC",
        "rule: threshold: replied / top-1 / quiet",
        "README example",
    ]
    print(markdown_table(headers, table))
    write_json(args.json, {"machine": info, "triples": len(triples), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
