"""Precision and recall of the Keras 3 notes (bot/answering/keras_versions.py).

Labelled sets: ``tests/fixtures/legacy_snippets.jsonl`` (dev: written alongside the table)
and ``tests/fixtures/legacy_snippets_heldout.jsonl`` (held out: written after the table,
before the detector was run on it). A record's ``expect`` lists the note keys it should get;
``known_misses`` names notes it deserves that no key exists for (counted as misses).

Three configurations, same run: the reviewed table alone (no installed keras), the checks
against the installed keras alone (empty table; a note found under a "missing:<symbol>" key
counts for the table row that speaks for that symbol), and both (what the bot runs).

Also, unlabelled: the notes the detector gives on the real questions of ``../shared/eval``
(listed with their evidence for review by hand), and the time ``detect_legacy_apis`` takes.

    .venv/bin/python benchmarks/version_notes.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, SHARED, load_average, run_started

FIXTURES = REPO / "tests" / "fixtures"
SETS = {"dev": "legacy_snippets.jsonl", "held-out": "legacy_snippets_heldout.jsonl"}


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def same_change(key: str, table: Any) -> str:
    """A check's "missing:<symbol>" key as the table row that speaks for the symbol, if any.

    Without the table (the "installed keras only" configuration) the same change is found
    under another key; counting it as the row's keeps that ablation about detection.
    """
    from bot.answering import keras_versions as kv

    row = kv._row_for(key.removeprefix("missing:"), table) if key.startswith("missing:") else None
    return row.id if row else key


def score(records: list[dict[str, Any]], detect: Any, table: Any = ()) -> dict[str, Any]:
    tp = fp = fn = 0
    pos = pos_hit = neg = neg_quiet = 0
    errors: list[dict[str, Any]] = []
    for r in records:
        got = {same_change(n.key, table) for n in detect(r["text"])}
        want = set(r["expect"])
        misses = len(r.get("known_misses", []))
        tp += len(got & want)
        fp += len(got - want)
        fn += len(want - got) + misses
        if want or misses:
            pos += 1
            pos_hit += bool(got & want)
        else:
            neg += 1
            neg_quiet += not got
        if got != want or misses:
            errors.append(
                {
                    "text": r["text"][:80],
                    "extra": sorted(got - want),
                    "missed": sorted(want - got) + r.get("known_misses", []),
                }
            )
    return {
        "notes_tp": tp,
        "notes_fp": fp,
        "notes_fn": fn,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "positives": pos,
        "positives_noted": pos_hit,
        "negatives": neg,
        "negatives_quiet": neg_quiet,
        "errors": errors,
    }


def wild_questions() -> list[tuple[str, str]]:
    out = []
    for path in sorted((SHARED / "eval").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            text = d.get("question") or d.get("query") or ""
            if text:
                out.append((f"{path.stem}:{d.get('id')}", text))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, metavar="FILE")
    args = parser.parse_args()
    started = run_started()

    from bot.answering import keras_versions as kv

    t0 = time.perf_counter()
    api = kv.installed_keras_api()
    scan_ms = (time.perf_counter() - t0) * 1000
    table = kv.load_table()
    configs = {
        "table only": lambda t: kv.detect_legacy_apis(t, use_installed=False),
        "installed keras only": lambda t: kv.detect_legacy_apis(t, rows=()),
        "table + installed keras (the bot)": lambda t: kv.detect_legacy_apis(t),
    }
    results: dict[str, Any] = {"run": started, "keras": api.version if api else None}
    results["table_rows"] = len(table)
    results["scan_ms"] = round(scan_ms, 1)

    print(f"keras {results['keras']}, {len(table)} table rows, first scan {scan_ms:.0f} ms")
    print()
    header = "| set | configuration | notes P | notes R | TP/FP/FN | positives noted |"
    print(header + " negatives quiet |")
    print("|---|---|---|---|---|---|---|")
    for set_name, file in SETS.items():
        records = load(FIXTURES / file)
        for config, detect in configs.items():
            s = score(records, detect, table)
            results[f"{set_name} / {config}"] = s
            print(
                f"| {set_name} | {config} | {s['precision']:.3f} | {s['recall']:.3f} | "
                f"{s['notes_tp']}/{s['notes_fp']}/{s['notes_fn']} | "
                f"{s['positives_noted']}/{s['positives']} | "
                f"{s['negatives_quiet']}/{s['negatives']} |"
            )

    texts = [r["text"] for f in SETS.values() for r in load(FIXTURES / f)]
    for t in texts[:20]:
        kv.detect_legacy_apis(t)  # warm-up (regex caches)
    samples = []
    for t in texts:
        t0 = time.perf_counter()
        kv.detect_legacy_apis(t)
        samples.append((time.perf_counter() - t0) * 1000)
    long_text = "\n".join(texts) * 5
    t0 = time.perf_counter()
    kv.detect_legacy_apis(long_text)
    long_ms = (time.perf_counter() - t0) * 1000
    results["latency_ms"] = {
        "n": len(samples),
        "p50": float(np.percentile(samples, 50)),
        "p99": float(np.percentile(samples, 99)),
        "long_text_chars": len(long_text),
        "long_text_ms": long_ms,
    }
    print()
    print(
        f"detect_legacy_apis per snippet: p50 {results['latency_ms']['p50']:.2f} ms, "
        f"p99 {results['latency_ms']['p99']:.2f} ms (n={len(samples)}); "
        f"one {len(long_text):,}-char text: {long_ms:.1f} ms"
    )

    wild = wild_questions()
    noted = [(qid, n) for qid, text in wild for n in kv.detect_legacy_apis(text)]
    results["wild"] = {
        "questions": len(wild),
        "noted_questions": len({q for q, _ in noted}),
        "notes": [{"id": q, "key": n.key, "evidence": n.evidence} for q, n in noted],
    }
    if wild:
        print()
        print(
            f"../shared/eval questions: {len(wild)}, with a note: "
            f"{results['wild']['noted_questions']} (review each by hand):"
        )
        for q, n in noted:
            print(f"- {q}: `{n.key}` ← {n.evidence!r}")
    results["load_average_at_end"] = load_average()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
