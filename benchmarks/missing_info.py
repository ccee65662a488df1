"""Precision and recall of the missing-information detector (bot/answering/missing_info.py).

Labelled set: ``benchmarks/data/missing_info.jsonl``, questions written by hand in the style
of the Keras room, forum and Stack Overflow, each labelled with what a maintainer would ask
for (``missing``: version, traceback, code, shapes; empty when the question is complete or
needs nothing back). ``split`` is ``dev`` (the rules were written against it) or
``held-out`` (scored once the rules were done). Precision and recall are per item, over the
questions of a split; "quiet" counts the questions labelled complete that got no ask. A
keyword baseline (``naive_predict``) is scored in the same run.

Also, unlabelled: how many of the real questions in ``../shared/eval`` the detector asks
something of, and what (``--list-eval`` prints them for review by hand); and the time
one ``detect_missing`` call takes.

    .venv/bin/python benchmarks/missing_info.py [--errors SPLIT] [--list-eval] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, SHARED

DATA = REPO / "benchmarks" / "data" / "missing_info.jsonl"
SPLITS = ("dev", "held-out")


def load(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def predict(record: dict[str, Any]) -> set[str]:
    from bot.answering.missing_info import detect_missing

    info = detect_missing(record["text"], has_attachment=record.get("has_attachment", False))
    return set(info.kinds)


_NAIVE_VERSION = re.compile(r"\b(?:keras|tf|tensorflow)\s*\d|tf\.keras|keras_core", re.I)
_NAIVE_PROBLEM = re.compile(r"error|exception|n't work|not work|wrong|crash|nan\b|stuck", re.I)


def naive_predict(record: dict[str, Any]) -> set[str]:
    """The baseline: keywords, as a simple bot would ask (no report check, no exceptions)."""
    text = record["text"]
    out = set()
    if _NAIVE_PROBLEM.search(text) and not _NAIVE_VERSION.search(text):
        out.add("version")
    if re.search(r"error|exception", text, re.I) and "Traceback" not in text:
        out.add("traceback")
    if re.search(r"n't work|not work|wrong", text, re.I) and "```" not in text:
        out.add("code")
    if re.search(r"shape|dtype|ndim", text, re.I) and "```" not in text:
        out.add("shapes")
    return out


def score(records: list[dict[str, Any]], predictor: Any = predict) -> dict[str, Any]:
    from bot.answering.missing_info import KINDS

    rows: dict[str, dict[str, Any]] = {}
    got = [predictor(r) for r in records]
    for kind in (*KINDS, "any item"):
        tp = fp = fn = 0
        for r, g in zip(records, got, strict=True):
            want = set(r["missing"])
            if kind == "any item":
                tp += len(want & g)
                fp += len(g - want)
                fn += len(want - g)
            else:
                tp += kind in want and kind in g
                fp += kind not in want and kind in g
                fn += kind in want and kind not in g
        rows[kind] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
        }
    complete = [g for r, g in zip(records, got, strict=True) if not r["missing"]]
    exact = sum(set(r["missing"]) == g for r, g in zip(records, got, strict=True))
    errors = [
        {"id": r["id"], "want": sorted(r["missing"]), "got": sorted(g), "text": r["text"]}
        for r, g in zip(records, got, strict=True)
        if set(r["missing"]) != g
    ]
    return {
        "n": len(records),
        "items": rows,
        "complete": len(complete),
        "complete_quiet": sum(not g for g in complete),
        "exact": exact,
        "errors": errors,
    }


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| split | item | labelled | precision | recall | TP/FP/FN |",
        "|---|---|---|---|---|---|",
    ]
    for split, res in results.items():
        for kind, row in res["items"].items():
            name = f"**{kind}**" if kind == "any item" else kind
            counts = f"{row['tp']}/{row['fp']}/{row['fn']}"
            lines.append(
                f"| {split} ({res['n']}) | {name} | {row['tp'] + row['fn']} "
                f"| {fmt(row['precision'])} | {fmt(row['recall'])} | {counts} |"
            )
        lines.append(
            f"| {split} ({res['n']}) | complete questions left alone | {res['complete']} | | "
            f"{res['complete_quiet']}/{res['complete']} | |"
        )
        lines.append(
            f"| {split} ({res['n']}) | exactly right (all items) | {res['n']} "
            f"| | {res['exact']}/{res['n']} | |"
        )
    return "\n".join(lines)


def eval_questions(paths: list[Path]) -> list[dict[str, Any]]:
    from bot.answering.missing_info import detect_missing

    out = []
    for path in paths:
        if not path.exists():
            continue
        for r in load(path):
            text = r.get("question") or r.get("query") or ""
            info = detect_missing(text)
            naive = sorted(naive_predict({"text": text}))
            out.append({"id": r["id"], "kinds": list(info.kinds), "naive": naive, "text": text})
    return out


def timings(texts: list[str]) -> list[float]:
    """Milliseconds per ``detect_missing`` call, after one warm-up pass (regex compilation)."""
    from bot.answering.missing_info import detect_missing

    for text in texts:
        detect_missing(text)
    out = []
    for text in texts:
        start = time.perf_counter()
        detect_missing(text)
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--eval-dir", type=Path, default=SHARED / "eval", help="unlabelled real questions"
    )
    parser.add_argument("--errors", choices=SPLITS, help="print the mismatches of this split")
    parser.add_argument(
        "--list-eval", action="store_true", help="print the asks on the real questions"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    records = load(args.data)
    results = {split: score([r for r in records if r["split"] == split]) for split in SPLITS}
    baseline = {
        split: score([r for r in records if r["split"] == split], naive_predict) for split in SPLITS
    }
    shown = args.data.relative_to(REPO) if args.data.is_relative_to(REPO) else args.data
    print(f"Labelled set: {shown}")
    print()
    print(table(results))
    print()
    print("Baseline (keywords: error / doesn't work / shape without a version, Traceback or ```):")
    print()
    print(table(baseline))
    real = eval_questions(
        [args.eval_dir / "questions-dev.jsonl", args.eval_dir / "duplicates-dev.jsonl"]
    )
    if real:
        asked = [q for q in real if q["kinds"]]
        per_kind = Counter(k for q in asked for k in q["kinds"])
        print()
        print(
            f"Real questions ({args.eval_dir}): {len(asked)}/{len(real)} get an ask; "
            + ", ".join(f"{k} {n}" for k, n in sorted(per_kind.items()))
        )
        naive = [q for q in real if q["naive"]]
        per_naive = Counter(k for q in naive for k in q["naive"])
        print(
            f"Baseline on the same: {len(naive)}/{len(real)} get an ask; "
            + ", ".join(f"{k} {n}" for k, n in sorted(per_naive.items()))
        )
        if args.list_eval:
            for q in asked:
                print(f"- {q['id']} {q['kinds']}: {q['text'][:160]!r}")
    texts = [r["text"] for r in records] + [q["text"] for q in real]
    ms = timings(texts)
    print()
    print(
        f"detect_missing per question: p50 {np.percentile(ms, 50):.2f} ms, "
        f"p99 {np.percentile(ms, 99):.2f} ms, max {max(ms):.2f} ms ({len(ms)} questions)"
    )
    if args.errors:
        print()
        for e in results[args.errors]["errors"]:
            print(f"- {e['id']} want {e['want']} got {e['got']}: {e['text'][:200]!r}")
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "baseline": baseline, "real": real}, indent=1),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
