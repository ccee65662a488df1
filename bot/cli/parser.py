"""The ``supportbot`` argument parser: one small function per command group, so each
group's flags and help texts are read in one place. Building it imports nothing heavy."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from bot.cli.models_cmd import add_parser as add_models_commands


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
    """The whole parser; the command groups are added in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="supportbot",
        description="Community-support bot for Keras chat rooms: index the docs, suggest replies.",
        epilog="Settings also come from SUPPORTBOT_* environment variables and an optional "
        "TOML file (SUPPORTBOT_CONFIG). See README.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_global(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_index_commands(sub)
    _add_ask_command(sub)
    _add_run_command(sub)
    _add_eval_command(sub)
    _add_eval_duplicates_command(sub)
    _add_threads_commands(sub)
    _add_db_commands(sub)
    _add_users_commands(sub)
    _add_digest_command(sub)
    add_models_commands(sub, common=_add_common)
    return parser


def _add_index_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``index build`` and ``index status``."""
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


def _between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, with a one-line error."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value

    return parse


def _add_digest_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``digest [--days N] [--limit N] [--post]``."""
    digest = sub.add_parser(
        "digest",
        help="print or post the maintainers' digest (Markdown): open questions, first-time "
        "askers, doc gaps, this period against the one before",
        description="Print the maintainers' digest. `supportbot run` also posts one on "
        "SUPPORTBOT_DIGEST_SCHEDULE (default Mondays 08:00 UTC), once per period.",
    )
    digest.add_argument(
        "--days",
        type=_between(1, 90),
        default=None,
        metavar="N",
        help="the period in days, compared with the N days before it "
        "(default SUPPORTBOT_DIGEST_DAYS, 7)",
    )
    digest.add_argument(
        "--limit",
        type=_between(1, 200),
        default=20,
        metavar="N",
        help="open questions listed, oldest first (default 20; the total is always given)",
    )
    digest.add_argument(
        "--post",
        action="store_true",
        help="also post it now: to SUPPORTBOT_MAINTAINERS_ROOM (a Matrix room) when set, and "
        "to the dashboard's Digests page",
    )
    _add_common(digest)


def _add_ask_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``ask QUESTION``."""
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


def _add_run_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``run`` (and ``--prepare``)."""
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


def _add_eval_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``eval FILE``: retrieval quality, fitting the confidence model."""
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


def _add_eval_duplicates_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``eval-duplicates FILE``: past-answer retrieval."""
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


def _add_threads_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``threads import``."""
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


def _add_db_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``db status`` and ``db upgrade``."""
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


def _add_users_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``users add``, ``users list`` and ``users remove``."""
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
