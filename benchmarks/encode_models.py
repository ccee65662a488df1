"""Query encode latency of several embedding models, side by side (no index needed).

Each model is loaded once; then every query is encoded by each model in turn, the order of the
models alternating from query to query so neither always runs first on a warm cache. The text
encoded is exactly what ``Retriever.search`` encodes (``clean_query`` -> ``dense_query_text``),
one query per call, as the bot does. Reported: load time, dimension, size of the model folder
on disk, and p50/p99 of the bare ``encoder.encode([text])``, as wall time and as the process's
CPU time (the comparable number on a machine shared with other work; use --torch-threads 1).
"""

from __future__ import annotations

import argparse
import sys
import time
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
    run_main,
    run_started,
    setup,
    summarize,
    write_json,
)
from benchmarks.query_latency import build_queries  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].rstrip("."),
        epilog="Prints a Markdown table to stdout. Example: python benchmarks/encode_models.py "
        "--model all-MiniLM-L6-v2 --model mpnet --json /tmp/encode_models.json",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="a SUPPORTBOT_EMBEDDING_MODEL value; repeat for each model "
        "(default: all-MiniLM-L6-v2 and mpnet)",
    )
    parser.add_argument(
        "--questions",
        type=Path,
        default=SHARED / "eval" / "questions-dev.jsonl",
        help="questions JSONL (field 'question'); cycled with variants up to --min-queries",
    )
    parser.add_argument("--min-queries", type=int, default=200, help="timed queries per model")
    parser.add_argument("--warmup", type=int, default=10, help="untimed queries per model first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the query order shuffle")
    add_common_args(parser)
    args = parser.parse_args(argv)
    args.models = args.models or ["all-MiniLM-L6-v2", "mpnet"]
    return args


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bot.evaluation.questions import load_questions
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.search import SearchParams, clean_query, dense_query_text

    questions = [q.question for q in load_questions(args.questions)]
    queries, warm, _ = build_queries(questions, args.min_queries, args.warmup, args.seed)
    words = SearchParams().dense_query_words

    def dense_text(query: str) -> str:
        prose, code = clean_query(query)
        return dense_query_text(prose, code, max_words=words) or query[:500]

    import sentence_transformers  # noqa: F401 - imported here so no model's load time has it

    encoders = []
    models: dict[str, dict[str, Any]] = {}
    for name in args.models:
        t0 = time.perf_counter()
        encoder = Encoder(name, device=args.device or "auto", batch_size=1)
        load_s = time.perf_counter() - t0
        encoders.append(encoder)
        models[name] = {
            "path": str(encoder.path),
            "dim": encoder.dim,
            "max_seq_length": encoder.max_seq_length,
            "device": encoder.device,
            "load_s": load_s,
            "folder_mb": folder_bytes(encoder.path) / 1e6,
        }
        progress(args, f"{name}: dim {encoder.dim}, loaded in {load_s:.1f} s")
    for text in warm:
        for encoder in encoders:
            encoder.encode([dense_text(text)])
    times: dict[str, list[float]] = {name: [] for name in args.models}
    cpu: dict[str, list[float]] = {name: [] for name in args.models}
    for i, query in enumerate(queries):
        text = dense_text(query)
        order = encoders if i % 2 == 0 else encoders[::-1]
        for encoder in order:
            c0, t0 = time.process_time(), time.perf_counter()
            encoder.encode([text])
            times[encoder.name].append(time.perf_counter() - t0)
            cpu[encoder.name].append(time.process_time() - c0)
    for name in args.models:
        models[name]["encode"] = summarize(times[name])
        # CPU time of the process (all its threads): on a machine shared with other work, wall
        # time is mostly waiting; with --torch-threads 1 this is close to the idle wall time.
        models[name]["encode_cpu"] = summarize(cpu[name])
    return {
        "models": models,
        "setup": {"queries_timed": len(queries), "warmup_queries": len(warm)},
        "device": encoders[0].device,
    }


def report(data: dict[str, Any]) -> str:
    rows = [
        (
            name,
            m["dim"],
            m["max_seq_length"],
            f"{m['folder_mb']:.0f}",
            f"{m['load_s']:.1f}",
            m["encode"]["p50_ms"],
            m["encode"]["p99_ms"],
            m["encode"]["mean_ms"],
            m["encode_cpu"]["p50_ms"],
            m["encode_cpu"]["p99_ms"],
        )
        for name, m in data["models"].items()
    ]
    return "\n".join(
        [
            "## Query encode latency by model",
            "",
            machine_markdown(data["machine"]),
            "",
            f"{data['setup']['queries_timed']} timed queries per model (interleaved) after "
            f"{data['setup']['warmup_queries']} warm-up, one query per `encode` call.",
            "",
            markdown_table(
                (
                    "model",
                    "dim",
                    "max tokens",
                    "folder MB",
                    "load s",
                    "p50 ms",
                    "p99 ms",
                    "mean ms",
                    "CPU p50 ms",
                    "CPU p99 ms",
                ),
                rows,
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup(args)
    started = run_started()
    data = run(args)
    data["machine"] = machine_info(data["device"], started)
    print(report(data))
    write_json(args.json, data)
    return 0


if __name__ == "__main__":
    run_main(main)
