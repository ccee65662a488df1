"""``supportbot`` command line: parse arguments, build objects, run. No logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli.loaders import load_retriever, settings_from_args
from bot.cli.run import cmd_run
from bot.errors import SupportBotError
from bot.logs import setup_logging
from bot.settings import load_settings

if TYPE_CHECKING:
    from bot.store.auth_store import AuthStore

log = logging.getLogger("supportbot")

SAMPLE_QUESTION = "How do I stop training when the validation loss stops improving?"


def _add_global(p: argparse.ArgumentParser, *, top: bool) -> None:
    """``--data-dir`` and ``-v`` work before the command and after it. A subcommand's copy
    defaults to SUPPRESS, so it does not overwrite what was given before the command."""
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None if top else argparse.SUPPRESS,
        help="data folder (default: $SUPPORTBOT_DATA_DIR or ./data)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else argparse.SUPPRESS,
        help="more log output (-vv: debug)",
    )


def _add_common(p: argparse.ArgumentParser, *, model: bool = False) -> None:
    """The global options again, and ``--device`` on the commands that run the model."""
    _add_global(p, top=False)
    if model:
        p.add_argument(
            "--device",
            choices=("auto", "cpu", "cuda"),
            help="where the embedding model runs "
            "(default: $SUPPORTBOT_DEVICE or auto = CUDA if seen)",
        )


MODE_HELP = (
    "retrieval: hybrid (dense + BM25 fused, the default and what the bot uses), dense "
    "(embeddings only), lexical (BM25 only)"
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras-supportbot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supportbot",
        description="Community-support bot for Keras chat rooms: index the docs, suggest replies.",
        epilog="Settings also come from SUPPORTBOT_* environment variables and an optional "
        "TOML file (SUPPORTBOT_CONFIG). See README.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_global(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = sub.add_parser("index", help="build or inspect the search index")
    index_sub = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    build = index_sub.add_parser(
        "build",
        help="build the index from the sources and publish it atomically",
        description="Index the installed keras package's public API and, optionally, the "
        "keras.io guides and examples: a keras-io folder (--docs-dir) or repository (--docs-git). "
        "Unchanged text is not re-embedded; an unchanged corpus is not republished.",
    )
    build.add_argument(
        "--docs-dir", type=Path, help="keras-io checkout (guides/, examples/, templates/)"
    )
    build.add_argument(
        "--docs-git",
        metavar="URL",
        help="keras-io git repository: cloned into DATA_DIR/docs/keras-io on the first build, "
        "pulled (--ff-only) on later builds and the nightly re-index",
    )
    build.add_argument(
        "--site-map",
        type=Path,
        help="site_map.json (default: DOCS_DIR/site_map.json, or DOCS_DIR/scripts/*_master.py)",
    )
    build.add_argument(
        "--no-keras", action="store_true", help="skip the installed keras package's API"
    )
    build.add_argument(
        "--force", action="store_true", help="publish a new version even if unchanged"
    )
    build.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars, no progress lines (without a terminal, progress is logged "
        "every few seconds instead of drawn)",
    )
    _add_common(build, model=True)
    status = index_sub.add_parser("status", help="show the published index")
    status.add_argument("--json", action="store_true", help="print the manifest as JSON")
    _add_common(status)

    ask = sub.add_parser("ask", help="print the suggested reply to a question")
    ask.add_argument("question", help="the question, as a user would type it")
    ask.add_argument(
        "--json", action="store_true", help="print JSON (doc ids, titles, urls, scores)"
    )
    ask.add_argument(
        "--mode", choices=("hybrid", "dense", "lexical"), default="hybrid", help=MODE_HELP
    )
    ask.add_argument(
        "--markdown",
        action="store_true",
        help="print the reply's Markdown as the bot posts it (default: the reply as read)",
    )
    _add_common(ask, model=True)

    run = sub.add_parser(
        "run",
        help="answer in the configured Matrix/Gitter rooms (or the local room) and serve the "
        "dashboard",
        description="Follow the rooms with a /sync long-poll, store every question for triage, "
        "reply in a thread when mentioned, and serve the maintainers' dashboard, /healthz, "
        "/readyz and /metrics on SUPPORTBOT_WEB_HOST:SUPPORTBOT_WEB_PORT. With "
        "SUPPORTBOT_MATRIX_USER_ID, SUPPORTBOT_MATRIX_ACCESS_TOKEN (or _FILE) and "
        "SUPPORTBOT_MATRIX_ROOMS it joins a Matrix room; without them it serves the local room "
        "page at /room. See README.",
    )
    run.add_argument(
        "--prepare",
        action="store_true",
        help="first migrate the database (db upgrade) and build the index if none is "
        "published yet (what the Docker image does at start)",
    )
    _add_common(run, model=True)

    ev = sub.add_parser(
        "eval",
        help="measure retrieval quality on a labelled JSONL file",
        description="Recall@1/5/10, MRR@10, nDCG@10 over answerable questions; for unanswerable "
        "ones, the share whose confidence stays under the reply threshold.",
    )
    ev.add_argument(
        "file", type=Path, help="questions JSONL (id, question, relevant, answerable_from_docs)"
    )
    ev.add_argument(
        "--mode",
        choices=("hybrid", "dense", "lexical", "all"),
        default="hybrid",
        help=MODE_HELP + "; all: each of them",
    )
    ev.add_argument(
        "--json", action="store_true", help="print one JSON object (a list with --mode all)"
    )
    ev.add_argument("--per-question", action="store_true", help="also list each question's rank")
    ev.add_argument(
        "--fit-confidence",
        action="store_true",
        help="fit the confidence model on FILE and print its cross-validated coverage/precision "
        "curve (hybrid mode); --save-confidence writes the model",
    )
    ev.add_argument("--save-confidence", type=Path, metavar="JSON", help="where to write it")
    ev.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the folds (default 0)")
    _add_common(ev, model=True)

    dup = sub.add_parser(
        "eval-duplicates",
        help="measure past-answer retrieval on a duplicates JSONL file",
        description="Build a fresh pool of past threads (one per line of FILE, from its "
        "original_* fields, plus every question of --distractors as an unanswered thread, "
        "except the queries themselves) in a temporary folder, ask each query, and report "
        "Recall@1, Recall@5 and MRR@10 of the original. The live database and index are not "
        "used; the configured embedding model is.",
    )
    dup.add_argument(
        "file",
        type=Path,
        help="duplicates JSONL (id, query, original_title, original_body, original_answer, "
        "original_url)",
    )
    dup.add_argument(
        "--distractors",
        type=Path,
        metavar="QUESTIONS",
        help="questions JSONL (id, question); each joins the pool as an unanswered thread",
    )
    dup.add_argument(
        "--mode",
        choices=("hybrid", "dense", "lexical", "all"),
        default="hybrid",
        help=MODE_HELP + "; all: each of them",
    )
    dup.add_argument(
        "--json", action="store_true", help="print one JSON object (a list with --mode all)"
    )
    dup.add_argument("--per-question", action="store_true", help="also list each query's rank")
    _add_common(dup, model=True)

    threads = sub.add_parser("threads", help="manage past answered threads (imports)")
    threads_sub = threads.add_subparsers(dest="threads_command", required=True, metavar="ACTION")
    imp = threads_sub.add_parser(
        "import",
        help="import answered threads from a JSON Lines file or a Gitter export",
        description="Upsert question/answer pairs into the past answers by URL, so importing a "
        "file again changes nothing. Our JSON Lines: one {question, answer, url, asked_by, "
        "answered_by, created_at, source} object per line. Gitter: the room's message export "
        "(a JSON array, or one message per line); each thread root with replies becomes a "
        "pair. Bad lines are reported and skipped. Run `supportbot index build` afterwards to "
        "make them searchable. See README.",
    )
    imp.add_argument("file", type=Path, help="the file to import")
    imp.add_argument(
        "--format",
        choices=("auto", "jsonl", "gitter"),
        default="auto",
        help="file format (default: auto-detect)",
    )
    imp.add_argument(
        "--room-url-base",
        default=None,
        metavar="URL",
        help="Gitter room URL; a thread's link is URL?at=<root id> "
        "(default: https://gitter.im/keras-team/keras)",
    )
    imp.add_argument(
        "--maintainers",
        default="",
        metavar="NAMES",
        help="Gitter: comma-separated usernames whose replies are preferred as the answer",
    )
    imp.add_argument("--json", action="store_true", help="print a JSON summary")
    _add_common(imp)

    db = sub.add_parser("db", help="the database schema: show its revision, upgrade it")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_status = db_sub.add_parser(
        "status",
        help="the schema's revision and the one this version needs (exit 1 unless equal)",
    )
    db_status.add_argument("--json", action="store_true", help="print one JSON object")
    _add_common(db_status)
    db_upgrade = db_sub.add_parser(
        "upgrade",
        help="migrate the schema to the revision this version needs (safe to repeat)",
        description="Apply the pending migrations in one transaction, under a lock, so it is "
        "safe while other workers start. A database made before migrations existed is "
        "recognised and migrated with its data. Stop the running bot first: it was written "
        "for the old schema.",
    )
    _add_common(db_upgrade)

    users = sub.add_parser("users", help="manage the dashboard's maintainer accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser(
        "add",
        help="add an account (asks for the password; or reads one line from stdin)",
        description="Add a dashboard account. On a terminal the password is asked twice; "
        "otherwise one line is read from stdin (e.g. from a secrets file). At least 8 "
        "characters. The password is stored only as a scrypt hash.",
    )
    add.add_argument("name", help="the user name to sign in with")
    add.add_argument(
        "--update",
        action="store_true",
        help="set a new password if the account exists (signs its browsers out)",
    )
    _add_common(add)
    listing = users_sub.add_parser("list", help="list the accounts and their last sign-in")
    _add_common(listing)
    remove = users_sub.add_parser("remove", help="remove an account and sign it out")
    remove.add_argument("name")
    _add_common(remove)
    return parser


def cmd_index_build(args: argparse.Namespace) -> int:
    from rich.console import Console

    from index_builder.build import build_index

    overrides: dict[str, Any] = {
        "docs_dir": args.docs_dir,
        "site_map": args.site_map,
        "docs_git": args.docs_git,
    }
    if args.no_keras:
        overrides["include_keras_api"] = False
    settings = settings_from_args(args, **overrides)
    # A flag beats the environment: --docs-git replaces SUPPORTBOT_DOCS_DIR and vice versa.
    if args.docs_git and not args.docs_dir:
        settings = settings.model_copy(update={"docs_dir": None})
    elif args.docs_dir and not args.docs_git:
        settings = settings.model_copy(update={"docs_git": None})
    console = Console(stderr=True)
    # Bars on a terminal; written to a file or pipe (systemd, Docker, CI), progress lines.
    interactive = console.is_terminal and sys.stdout.isatty()
    progress_factory, finish = _progress(
        console, enabled=not args.no_progress and interactive, lines=not args.no_progress
    )
    try:
        report = build_index(settings, progress=progress_factory, force=args.force)
    finally:
        finish()
    out = Console()
    state = "published" if report.published else "unchanged (current version kept)"
    out.print(f"index {report.version}: {state}")
    for name, info in report.sources.items():
        out.print(f"  source {name} @ {info['version']}: {info['documents']} documents")
        outside = info.get("skipped_outside_docs") or []
        if outside:
            out.print(
                f"  skipped {len(outside)} link(s) resolving outside the docs folder "
                f"(not indexed): {', '.join(outside)}",
                markup=False,
                highlight=False,
            )
    out.print(
        f"  {report.documents} documents, {report.chunks} chunks; embedded {report.embedded}, "
        f"from cache {report.cached}; {report.seconds:.1f} s"
    )
    if report.reranker:
        r = report.reranker
        out.print(
            f"  reranker: learnt from {r.get('queries')} queries mined from the docs; "
            f"held-out MRR@10 {r.get('held_out_mrr_first_stage')} -> "
            f"{r.get('held_out_mrr_reranked')}"
        )
    elif report.published:
        out.print("  reranker: none (too few links in the docs to learn from): fusion ranking only")
    if report.confidence:
        from index_builder.confidence_training import describe

        out.print(f"  {describe(report.confidence)}")
    if report.path:
        out.print(f"  at {report.path}")
    return 0


def _progress(
    console: Any, *, enabled: bool, lines: bool = False
) -> tuple[Callable[[str, int | None], Callable[[int], None]], Callable[[], None]]:
    if not enabled and lines:
        from index_builder.progress import ProgressLines
        from index_builder.progress import log as progress_log

        progress_log.setLevel(logging.INFO)  # shown without -v: this is the build's output
        return ProgressLines(), lambda: None
    if not enabled:

        def quiet(name: str, total: int | None) -> Callable[[int], None]:
            if total:
                log.info("%s: %d items", name, total)
            return lambda _n: None

        return quiet, lambda: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    bars.start()

    def factory(name: str, total: int | None) -> Callable[[int], None]:
        task = bars.add_task(name, total=total)
        if total is None:
            bars.update(task, total=1, completed=1)
        return lambda n: bars.advance(task, n)

    return factory, bars.stop


def cmd_index_status(args: argparse.Namespace) -> int:
    from bot.retrieval.index import current_version, read_manifest

    settings = settings_from_args(args)
    version = current_version(settings.index_root)
    if version is None:
        print(
            f"no index published under {settings.index_root}; run `supportbot index build`",
            file=sys.stderr,
        )
        return 1
    manifest = read_manifest(settings.index_root / version)
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    print(f"current index: {version}  ({settings.index_root / version})")
    print(
        f"  built {manifest.get('built_at')} with {manifest.get('model')} "
        f"(dim {manifest.get('dim')}, "
        f"{manifest.get('dense_index')})"
    )
    print(f"  {manifest.get('documents')} documents, {manifest.get('chunks')} chunks")
    for name, info in manifest.get("sources", {}).items():
        print(f"  source {name} @ {info.get('version')}: {info.get('documents')} documents")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from bot.answering import compose_reply

    settings = settings_from_args(args)
    retriever = load_retriever(settings)
    result = retriever.search(args.question, mode=args.mode, k=10)
    reply = compose_reply(
        result,
        threshold=settings.reply_threshold,
        max_sources=settings.max_sources,
        index_version=retriever.index.version,
        chunks=retriever.index.chunk_texts,
    )
    if args.json:
        print(json.dumps(reply.to_json(), indent=2, ensure_ascii=False))
    else:
        from bot.answering.render import markdown_to_text

        print(reply.markdown if args.markdown else markdown_to_text(reply.markdown))
        if not reply.would_reply:
            print(
                f"\n(below the reply threshold {settings.reply_threshold:.0%}: in the room a "
                "mention gets this reply, marked as unsure, and the question goes to the "
                "maintainers' queue; an unmentioned question only goes to the queue)"
            )
    return 0


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    """Right-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))


def cmd_eval(args: argparse.Namespace) -> int:
    from bot.evaluation.questions import (
        coverage_curve,
        evaluate,
        iter_curve,
        iter_table,
        load_questions,
    )

    settings = settings_from_args(args)
    questions = load_questions(args.file)
    retriever = load_retriever(settings)
    if args.fit_confidence:
        return _fit_confidence(args, questions, retriever)
    modes = ("hybrid", "dense", "lexical") if args.mode == "all" else (args.mode,)
    reports = []
    for mode in modes:

        def ask(q: str, mode: Any = mode) -> tuple[list[str], float]:
            result = retriever.search(q, mode=mode, k=10)
            return [h.doc_id for h in result.hits], result.confidence

        reports.append(
            evaluate(
                questions,
                ask,
                mode=mode,
                threshold=settings.reply_threshold,
                canonical=retriever.index.canonical_id,
            )
        )
    if args.json:
        payload: Any = (
            [r.to_json() for r in reports] if args.mode == "all" else reports[0].to_json()
        )
        print(json.dumps(payload, indent=2))
    else:
        rows = list(iter_table(reports))
        _print_table(rows)
        print(
            f"index {retriever.index.version}; {len(questions)} questions; "
            f"reply threshold {settings.reply_threshold}"
        )
        for r in reports:
            if r.mode != "hybrid":
                continue  # the bot answers in hybrid mode: its curve is the one to choose by
            print(_confidence_line(retriever, r.per_question))
            print(f"\n{r.mode}: what the bot would do at each reply threshold")
            curve = coverage_curve(
                [(q["confidence"], q["rank"], not q.get("unanswerable")) for q in r.per_question]
            )
            _print_table(list(iter_curve(curve)))
    if args.per_question:
        for r in reports:
            for item in r.per_question:
                print(json.dumps({"mode": r.mode, **item}), file=sys.stderr)
    return 0


def _confidence_line(retriever: Any, rows: Sequence[dict[str, Any]]) -> str:
    from bot.retrieval.confidence import auc, model_origin

    origin = model_origin(retriever.params.confidence_model, retriever.index.confidence)
    score = auc([q["confidence"] for q in rows], [q["rank"] == 1 for q in rows])
    return f"confidence: {origin}; AUC of 'the top page is right' on this file {score or 0:.3f}"


def _fit_confidence(args: argparse.Namespace, questions: Sequence[Any], retriever: Any) -> int:
    from bot.evaluation.questions import fit_confidence_cv, iter_curve

    fit = fit_confidence_cv(
        questions,
        lambda q: retriever.search(q, k=10),
        canonical=retriever.index.canonical_id,
        folds=args.folds,
        seed=args.seed,
    )
    if args.save_confidence:
        args.save_confidence.write_text(
            json.dumps(fit.model.to_json(), indent=1) + "\n", encoding="utf-8"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "model": fit.model.to_json(),
                    "cross_validated": {
                        "folds": fit.folds,
                        "seed": fit.seed,
                        "auc": fit.auc,
                        "curve": [p.to_json() for p in fit.curve],
                        "chosen": fit.chosen.to_json() if fit.chosen else None,
                    },
                },
                indent=2,
            )
        )
        return 0
    print(
        f"cross-validated ({fit.folds} folds, seed {fit.seed}): every confidence below comes "
        f"from a model that did not see that question; AUC {fit.auc or 0:.3f}"
    )
    _print_table(list(iter_curve(fit.curve)))
    if fit.chosen:
        print(
            f"threshold {fit.chosen.threshold:.2f} keeps top-1 precision >= 0.90 and unanswerable "
            f"quiet >= 0.80 while replying to {fit.chosen.replied:.0%} of answerable questions"
        )
    else:
        print("no threshold keeps top-1 precision >= 0.90 and unanswerable quiet >= 0.80")
    if args.save_confidence:
        print(f"model fitted on all {len(questions)} questions written to {args.save_confidence}")
    return 0


def cmd_eval_duplicates(args: argparse.Namespace) -> int:
    from bot.errors import ConfigError
    from bot.evaluation.duplicates import (
        load_distractors,
        load_duplicates,
        pool_threads,
        run_duplicates_eval,
        table_rows,
    )
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.search import MODES

    settings = settings_from_args(args)
    pairs = load_duplicates(args.file)
    if not pairs:
        raise ConfigError(f"{args.file}: no duplicates to evaluate")
    distractors = load_distractors(args.distractors) if args.distractors else []
    encoder = Encoder(
        settings.embedding_model, device=settings.device, batch_size=settings.embed_batch_size
    )
    modes = MODES if args.mode == "all" else (args.mode,)
    reports = run_duplicates_eval(
        pairs,
        distractors,
        encoder,
        modes,
        chunk_max_words=settings.chunk_max_words,
        chunk_overlap_words=settings.chunk_overlap_words,
    )
    if args.json:
        payload: Any = (
            [r.to_json() for r in reports] if args.mode == "all" else reports[0].to_json()
        )
        print(json.dumps(payload, indent=2))
    else:
        rows = table_rows(reports)
        _print_table(rows)
        originals = len({p.original_url for p in pairs})
        pool = len(pool_threads(pairs, distractors))
        print(
            f"{len(pairs)} queries; pool of {pool} threads ({originals} originals, "
            f"{pool - originals} distractors); model {settings.embedding_model}"
        )
    if args.per_question:
        for r in reports:
            for item in r.per_query:
                print(json.dumps({"mode": r.mode, **item}), file=sys.stderr)
    return 0


def cmd_threads_import(args: argparse.Namespace) -> int:
    from bot.importers.past_answers import (
        DEFAULT_GITTER_ROOM_URL,
        ThreadImportError,
        import_threads,
    )
    from bot.store import Database
    from bot.store.past_answers import PastAnswerStore

    settings = settings_from_args(args)
    maintainers = [m.strip() for m in args.maintainers.split(",") if m.strip()]
    db = Database(settings.resolved_database_url)
    try:
        db.create_schema()
        report = import_threads(
            db,
            args.file,
            fmt=args.format,
            room_url_base=args.room_url_base or DEFAULT_GITTER_ROOM_URL,
            maintainers=maintainers,
        )
        stored = PastAnswerStore(db).count_by_source()
    finally:
        db.close()
    shown = 50
    for problem in report.problems[:shown]:
        print(f"{args.file}: {problem}", file=sys.stderr)
    if report.errors > shown:
        print(f"{args.file}: ... and {report.errors - shown} more errors", file=sys.stderr)
    if report.imported == 0:
        skipped = sum(report.skipped.values())
        raise ThreadImportError(
            f"{args.file}: nothing to import ({report.errors} errors, {skipped} skipped)"
        )
    if args.json:
        print(json.dumps({**report.to_json(), "stored": stored}, indent=2, ensure_ascii=False))
        return 0
    print(f"{args.file} ({report.format}): {report.summary()}")
    for reason, n in sorted(report.skipped.items()):
        print(f"  skipped {n}: {reason}")
    print("  past answers stored: " + ", ".join(f"{k} {v}" for k, v in stored.items()))
    if report.new or report.updated:
        print("  run `supportbot index build` to make them searchable")
    return 0


class UsageError(SupportBotError):
    """Bad input on the command line (a user name, a password)."""


def _read_new_password() -> str:
    """Twice at a terminal (never echoed); otherwise the first line of stdin."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise UsageError("the two passwords differ; nothing changed")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _auth_store(args: argparse.Namespace) -> AuthStore:
    from bot.store import Database
    from bot.store.auth_store import AuthStore

    db = Database(settings_from_args(args).resolved_database_url)
    db.create_schema()
    return AuthStore(db)


def cmd_users_add(args: argparse.Namespace) -> int:
    from bot.web.passwords import hash_password, password_problem

    name = args.name.strip()
    if not name or len(name) > 255 or any(c.isspace() or not c.isprintable() for c in name):
        raise UsageError("a user name is 1 to 255 printable characters without spaces")
    store = _auth_store(args)
    try:
        if not args.update and store.password_hash(name) is not None:
            raise UsageError(f"user {name!r} exists; use --update to set a new password")
        password = _read_new_password()
        problem = password_problem(password)
        if problem:
            raise UsageError(problem)
        outcome = store.add_user(name, hash_password(password), update_existing=args.update)
    finally:
        store.db.close()
    if outcome == "exists":  # added by someone else meanwhile
        raise UsageError(f"user {name!r} exists; use --update to set a new password")
    print(f"user {name} {outcome}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    store = _auth_store(args)
    try:
        users = store.users()
    finally:
        store.db.close()
    if not users:
        print("no dashboard users; add one with `supportbot users add NAME`")
        return 0
    rows = [("name", "created", "last sign-in")]
    for user in users:
        last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
        rows.append((user.name, f"{user.created_at:%Y-%m-%d %H:%M}", last))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    store = _auth_store(args)
    try:
        removed = store.remove_user(args.name)
    finally:
        store.db.close()
    if not removed:
        raise UsageError(f"no user {args.name!r}")
    print(f"user {args.name} removed")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    from bot.store import Database
    from bot.store.database import outdated_message

    db = Database(settings_from_args(args).resolved_database_url)
    try:
        current, head = db.schema_revision(), db.head_revision()
    finally:
        db.close()
    shown = db.url.render_as_string(hide_password=True)
    if args.json:
        info = {"database": shown, "revision": current, "head": head, "up_to_date": current == head}
        print(json.dumps(info, indent=2))
        return 0 if current == head else 1
    if current is None:
        state = 'empty: any command creates the schema, or run "supportbot db upgrade"'
    elif current == head:
        state = "up to date"
    else:
        state = outdated_message(current, head)
    print(f"database: {shown}")
    print(f"schema revision: {current or 'none'} (this version needs {head}): {state}")
    return 0 if current == head else 1


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bot.store import Database

    db = Database(settings_from_args(args).resolved_database_url)
    try:
        before, now = db.upgrade()
    finally:
        db.close()
    if before is None:
        print(f"created the database schema at revision {now}")
    elif before == now:
        print(f"the database schema is already at revision {now}")
    else:
        print(f"upgraded the database schema from revision {before} to {now}")
    return 0


def _log_format() -> str:
    """``log_format`` from the settings (environment, ``.env`` or the TOML file). A bad
    setting falls back to text here; the command itself then reports it in one line."""
    try:
        return load_settings().log_format
    except SupportBotError:
        return "text"


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, _log_format())
    handlers: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
        ("index", "build"): cmd_index_build,
        ("index", "status"): cmd_index_status,
        ("ask", None): cmd_ask,
        ("eval", None): cmd_eval,
        ("eval-duplicates", None): cmd_eval_duplicates,
        ("run", None): cmd_run,
        ("threads", "import"): cmd_threads_import,
        ("db", "status"): cmd_db_status,
        ("db", "upgrade"): cmd_db_upgrade,
        ("users", "add"): cmd_users_add,
        ("users", "list"): cmd_users_list,
        ("users", "remove"): cmd_users_remove,
    }
    handler = handlers[(args.command, getattr(args, f"{args.command}_command", None))]
    try:
        return handler(args)
    except SupportBotError as exc:
        print(f"supportbot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("supportbot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
