"""``supportbot db status`` and ``db upgrade``: the database schema's revision and its
migration."""

from __future__ import annotations

import argparse
import json

from bot.cli.loaders import settings_from_args


def cmd_db_status(args: argparse.Namespace) -> int:
    """Print the schema's revision and the one this version needs (exit 1 unless equal)."""
    from bot.store.database import Database, outdated_message

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
    """Migrate the schema to this version's revision."""
    from bot.store.database import Database

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
