"""``supportbot threads import``: import past answered threads (our JSON Lines or a Gitter
export) into the past answers, and report what was imported or skipped."""

from __future__ import annotations

import argparse
import json
import sys

from bot.cli.loaders import settings_from_args


def cmd_threads_import(args: argparse.Namespace) -> int:
    """Import the file and print what was stored and skipped (nothing imported: error)."""
    from bot.importers.past_answers import (
        DEFAULT_GITTER_ROOM_URL,
        ThreadImportError,
        import_threads,
    )
    from bot.store.database import Database
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
