"""Index build throughput: bare chunk embedding vs the project's full ``build_index``.

1. Collect the documents (keras API + keras-io docs, as configured) and chunk them with the
   project's chunker, in build order; report counts and how long that took (cold).
2. Load the encoder once; encode a warm-up batch.
3. (optional, ``--limit-chunks N``) bare ``encoder.encode(texts)`` of the first N chunks.
4. ``build_index`` on a fresh data dir with that encoder (wall time, chunks/s over all of its
   chunks, and its phases), then bare ``encoder.encode(texts)`` of exactly the chunk texts the
   build published (read back from its ``chunks.jsonl``): same texts, same model, same
   batch size (``--bracket``: also before the build, and the mean of both is compared).
   Goal: build chunks/s >= 0.9 x bare chunks/s.
5. ``build_index`` again with nothing changed: seconds (goal: a few) and chunks embedded (0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
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
    verdict,
    write_json,
)

GOAL_RATIO = 0.9
DOC_TOPS = ("guides", "examples", "templates")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].rstrip(".")
        + ". Builds into a fresh temporary data dir; never touches the repository's data/.",
        epilog="Prints a Markdown table to stdout. Quick check: python "
        "benchmarks/build_throughput.py --no-keras --docs-subset 10 --no-site-map",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--docs-dir",
        type=Path,
        default=SHARED / "keras-io-docs",
        help="keras-io docs export to index",
    )
    parser.add_argument(
        "--no-keras", action="store_true", help="leave out the installed keras package's API"
    )
    parser.add_argument(
        "--docs-subset",
        type=int,
        default=None,
        metavar="N",
        help="index only the first N Markdown pages (sorted by relative path), copied with "
        "their relative paths (and site_map.json) into the work dir",
    )
    parser.add_argument(
        "--no-site-map",
        action="store_true",
        help="copy the docs without site_map.json (no site-map stub documents; with "
        "--no-keras these are ~900 of the ~1,200 documents)",
    )
    parser.add_argument(
        "--limit-chunks",
        type=int,
        default=None,
        metavar="N",
        help="also time bare encoding of only the first N chunks (the build comparison always "
        "uses every chunk of the corpus: restrict that with --no-keras / --docs-subset)",
    )
    parser.add_argument(
        "--bracket",
        action="store_true",
        help="also bare-encode the corpus right before the build, and compare the build with "
        "the mean of the bare runs before and after it (cancels slow drift in machine speed; "
        "costs one more encode pass)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where to build (must be missing or empty; kept afterwards, its index is in "
        "WORK_DIR/data for query_latency.py --data-dir). Default: a temp dir, deleted at the end",
    )
    parser.add_argument(
        "--noop-goal-s",
        type=float,
        default=5.0,
        help="goal for the unchanged rebuild, in seconds",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    for name in ("docs_subset", "limit_chunks"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.docs_dir.is_dir():
        parser.error(f"--docs-dir {args.docs_dir} is not a folder")
    work = args.work_dir
    if work is not None and work.exists() and (not work.is_dir() or any(work.iterdir())):
        parser.error(f"--work-dir {work} must be missing or empty (a fresh build)")
    return args


# -- corpus ----------------------------------------------------------------------------------------


def page_files(docs_dir: Path) -> list[PurePosixPath]:
    """Relative paths of the Markdown files the keras-io source reads as pages, sorted."""
    from index_builder.sources.keras_io import page_path_for

    found = []
    for top in DOC_TOPS:
        root = docs_dir / top
        if root.is_dir():
            for file in root.rglob("*.md"):
                rel = PurePosixPath(file.relative_to(docs_dir).as_posix())
                if file.is_file() and page_path_for(rel) is not None:
                    found.append(rel)
    return sorted(found)


def copy_docs(src: Path, dest: Path, *, limit: int | None, site_map: bool) -> int:
    """Copy (the first ``limit``) page files keeping relative paths; returns files copied."""
    files = page_files(src)
    if limit is not None:
        files = files[:limit]
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)
    if site_map and (src / "site_map.json").is_file():
        shutil.copy2(src / "site_map.json", dest / "site_map.json")
    dest.mkdir(parents=True, exist_ok=True)
    return len(files)


def read_chunk_texts(index_path: Path) -> list[str]:
    from bot.retrieval.index import CHUNKS

    with (index_path / CHUNKS).open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


class PhaseClock:
    """A ``build_index`` progress factory that records when each phase starts."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def __call__(self, name: str, _total: int | None) -> Callable[[int], None]:
        self.marks.append((name, time.perf_counter()))
        return lambda _n: None

    def phases(self, start: float, end: float) -> dict[str, float]:
        """Seconds per phase; the first (before any mark) is document collection."""
        labels = {
            "collect": "collect documents",
            "chunk": "chunk + fingerprint + DB corpus write",
            "embed": "embed (cache lookup, encode, cache write)",
            "publish": "publish (files, FAISS, BM25, CURRENT)",
        }
        names = ["collect", *(name for name, _ in self.marks)]
        times = [start, *(t for _, t in self.marks), end]
        return {labels.get(name, name): times[i + 1] - times[i] for i, name in enumerate(names)}


def timed_build(settings: Any, encoder: Any) -> tuple[Any, float, dict[str, float]]:
    """Run ``build_index`` once: (report, wall seconds, seconds per phase)."""
    from index_builder.build import build_index

    clock = PhaseClock()
    start = time.perf_counter()
    report = build_index(settings, encoder=encoder, progress=clock)
    end = time.perf_counter()
    return report, end - start, clock.phases(start, end)


# -- benchmark -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bot.retrieval.encoder import Encoder
    from bot.settings import load_settings
    from index_builder.chunking import chunk_documents
    from index_builder.collect import collect_documents

    docs_dir = args.docs_dir.resolve()
    copied = None
    if args.docs_subset is not None or args.no_site_map:
        docs_dir = work / "docs"
        copied = copy_docs(
            args.docs_dir, docs_dir, limit=args.docs_subset, site_map=not args.no_site_map
        )
        progress(args, f"copied {copied} page files to {docs_dir}")
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    site_map = docs_dir / "site_map.json"
    settings = load_settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{(data_dir / 'supportbot.db').resolve()}",
        docs_dir=docs_dir,
        site_map=site_map if site_map.is_file() else None,
        include_keras_api=not args.no_keras,
        device=args.device,
    )

    # 1. Corpus, in build order (build_index sorts documents by id).
    progress(args, "collecting and chunking documents")
    t0 = time.perf_counter()
    documents, sources = collect_documents(settings)
    documents.sort(key=lambda d: d.doc_id)
    collect_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    chunks = chunk_documents(
        documents, max_words=settings.chunk_max_words, overlap_words=settings.chunk_overlap_words
    )
    chunk_s = time.perf_counter() - t0
    texts = [c.text for c in chunks]
    if not texts:
        raise SystemExit("the corpus has no chunks")
    progress(args, f"{len(documents)} documents, {len(texts)} chunks")

    # 2. Encoder, loaded once, warmed up.
    t0 = time.perf_counter()
    encoder = Encoder(
        settings.embedding_model, device=settings.device, batch_size=settings.embed_batch_size
    )
    load_model_s = time.perf_counter() - t0
    warm = texts[: encoder.batch_size]
    encoder.encode(warm)

    def bare(batch: list[str]) -> float:
        t = time.perf_counter()
        encoder.encode(batch)
        return time.perf_counter() - t

    # 3. Optional: bare encoding of the first N chunks.
    limited = None
    if args.limit_chunks is not None:
        subset = texts[: args.limit_chunks]
        progress(args, f"bare encode of the first {len(subset)} chunks")
        seconds = bare(subset)
        limited = {"chunks": len(subset), "seconds": seconds, "chunks_per_s": len(subset) / seconds}

    # 4. Full build on the fresh data dir, then bare encoding of exactly its chunk texts
    #    (with --bracket also before it: the collected texts are the build's, in its order).
    before_s = None
    if args.bracket:
        progress(args, f"bare encode of the {len(texts)} collected chunk texts (before the build)")
        before_s = bare(texts)
    progress(args, "build_index on a fresh data dir")
    first, build_s, build_phases = timed_build(settings, encoder)
    if not first.published or first.path is None:
        raise SystemExit(f"the first build did not publish an index: {first}")
    built_texts = read_chunk_texts(first.path)
    progress(args, f"bare encode of the build's {len(built_texts)} chunk texts")
    after_s = bare(built_texts)
    bracketed = before_s is not None and built_texts == texts
    bare_s = (before_s + after_s) / 2 if bracketed and before_s is not None else after_s

    # 5. Rebuild with nothing changed.
    progress(args, "build_index again, nothing changed")
    second, noop_s, noop_phases = timed_build(settings, encoder)

    build_cps = first.chunks / build_s
    bare_cps = len(built_texts) / bare_s
    r = ratio(build_cps, bare_cps)
    noop_ok = second.embedded == 0 and not second.published and noop_s <= args.noop_goal_s
    return {
        "benchmark": "build_throughput",
        "corpus": {
            "docs_dir": str(args.docs_dir),
            "docs_copy": str(docs_dir) if copied is not None else None,
            "docs_subset": args.docs_subset,
            "page_files_copied": copied,
            "site_map": site_map.is_file(),
            "keras_api": not args.no_keras,
            "sources": sources,
            "documents": len(documents),
            "chunks": len(texts),
            "distinct_chunk_texts": len(set(texts)),
            "mean_words_per_chunk": sum(len(t.split()) for t in texts) / len(texts),
            "build_texts_match_collected": sorted(built_texts) == sorted(texts),
        },
        "setup": {
            "work_dir": str(work),
            "data_dir": str(data_dir),
            "model": settings.embedding_model,
            "device": encoder.device,
            "batch_size": encoder.batch_size,
            "chunk_max_words": settings.chunk_max_words,
            "chunk_overlap_words": settings.chunk_overlap_words,
            "warmup_texts": len(warm),
            "load_model_s": load_model_s,
            "collect_cold_s": collect_s,
            "chunk_s": chunk_s,
        },
        "results": {
            "bare_first_n": limited,
            "bare_build_texts": {
                "chunks": len(built_texts),
                "seconds": bare_s,
                "chunks_per_s": bare_cps,
                "seconds_before_build": before_s,
                "seconds_after_build": after_s,
                "bracketed": bracketed,
            },
            "build": {
                "chunks": first.chunks,
                "documents": first.documents,
                "embedded": first.embedded,
                "cached": first.cached,
                "seconds": build_s,
                "seconds_reported": first.seconds,
                "chunks_per_s": build_cps,
                "version": first.version,
                "phases_s": build_phases,
            },
            "noop_rebuild": {
                "chunks": second.chunks,
                "embedded": second.embedded,
                "published": second.published,
                "seconds": noop_s,
                "version": second.version,
                "phases_s": noop_phases,
            },
        },
        "checks": {
            "build_over_bare_chunks_per_s": r,
            "goal_ratio": GOAL_RATIO,
            "ratio_pass": bool(r >= GOAL_RATIO),
            "noop_goal_s": args.noop_goal_s,
            "noop_pass": bool(noop_ok),
        },
    }


def report(data: dict[str, Any]) -> str:
    corpus, setup_, res, checks = data["corpus"], data["setup"], data["results"], data["checks"]
    build, bare_all, noop = res["build"], res["bare_build_texts"], res["noop_rebuild"]
    what = []
    if corpus["keras_api"]:
        what.append("keras API")
    if corpus["docs_subset"] is not None:
        what.append(f"first {corpus['page_files_copied']} keras-io pages")
    else:
        what.append("keras-io docs")
    what.append("site-map stubs" if corpus["site_map"] else "no site map")
    per_source = ", ".join(f"{k} {v['documents']:,}" for k, v in corpus["sources"].items())
    rows: list[tuple[Any, ...]] = []
    if res["bare_first_n"]:
        b = res["bare_first_n"]
        rows.append(
            (
                "bare `encoder.encode`, first N chunks",
                b["chunks"],
                b["seconds"],
                b["chunks_per_s"],
                "",
            )
        )
    n_bare = bare_all["chunks"]
    before, after = bare_all["seconds_before_build"], bare_all["seconds_after_build"]
    if before is not None:
        rows.append(
            ("bare `encoder.encode`, before the build", n_bare, before, n_bare / before, "one call")
        )
        rows.append(
            ("bare `encoder.encode`, after the build", n_bare, after, n_bare / after, "one call")
        )
    rows += [
        (
            "bare `encoder.encode`, the build's chunk texts",
            n_bare,
            bare_all["seconds"],
            bare_all["chunks_per_s"],
            "mean of before and after" if bare_all["bracketed"] else "one call, after the build",
        ),
        (
            "full `build_index`, fresh data dir",
            build["chunks"],
            build["seconds"],
            build["chunks_per_s"],
            f"embedded {build['embedded']:,}, cached {build['cached']:,}",
        ),
        (
            "`build_index` again, nothing changed",
            noop["chunks"],
            noop["seconds"],
            "",
            f"embedded {noop['embedded']:,}, published: {'yes' if noop['published'] else 'no'}",
        ),
    ]
    phase_rows = [
        (name, secs, 100.0 * secs / build["seconds"]) for name, secs in build["phases_s"].items()
    ]
    out = [
        "## Index build throughput",
        "",
        machine_markdown(data["machine"]),
        "",
        f"Corpus: {' + '.join(what)} ({per_source}): {corpus['documents']:,} documents, "
        f"{corpus['chunks']:,} chunks ({corpus['distinct_chunk_texts']:,} distinct texts, "
        f"{corpus['mean_words_per_chunk']:.0f} words on average). Model `{setup_['model']}` on "
        f"{setup_['device']}, batch size {setup_['batch_size']}, chunks of "
        f"{setup_['chunk_max_words']} words (overlap {setup_['chunk_overlap_words']}). Not timed: "
        f"model load {setup_['load_model_s']:.1f} s, first (cold) collection "
        f"{setup_['collect_cold_s']:.1f} s + chunking {setup_['chunk_s']:.1f} s, warm-up encode "
        f"of {setup_['warmup_texts']} chunks.",
        "",
        markdown_table(("measurement", "chunks", "seconds", "chunks/s", "notes"), rows),
        "",
        markdown_table(("first build, by phase", "seconds", "% of build"), phase_rows),
        "",
        markdown_table(
            ("check", "measured", "goal", "result"),
            [
                (
                    "build chunks/s / bare chunks/s",
                    f"{checks['build_over_bare_chunks_per_s']:.2f}x",
                    f">= {checks['goal_ratio']}x",
                    verdict(checks["ratio_pass"]),
                ),
                (
                    "unchanged rebuild",
                    f"{noop['seconds']:.2f} s, embedded {noop['embedded']}",
                    f"<= {checks['noop_goal_s']:g} s, embedded 0",
                    verdict(checks["noop_pass"]),
                ),
            ],
        ),
    ]
    if before is not None and not bare_all["bracketed"]:
        out += [
            "",
            "Note: the build's chunk texts are not the collected ones, so only the bare "
            "run after the build is compared.",
        ]
    if not corpus["build_texts_match_collected"]:
        out += [
            "",
            "Note: the build's chunk texts differ from the separately collected corpus "
            "(did the docs change during the run?).",
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup(args)
    started = run_started()
    if args.work_dir is not None:
        work = args.work_dir.resolve()
        work.mkdir(parents=True, exist_ok=True)
        remove = False
    else:
        work = Path(tempfile.mkdtemp(prefix="supportbot-bench-"))
        remove = True
    try:
        data = run(args, work)
    finally:
        if remove:
            shutil.rmtree(work, ignore_errors=True)
    data["machine"] = machine_info(data["setup"]["device"], started)
    print(report(data))
    write_json(args.json, data)
    return 0


if __name__ == "__main__":
    run_main(main)
