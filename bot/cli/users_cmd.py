"""``supportbot users add/list/remove``: the dashboard's maintainer accounts, and the
password prompt (twice at a terminal, one line of stdin otherwise)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bot.cli.loaders import settings_from_args
from bot.cli.output import print_table
from bot.errors import UsageError

if TYPE_CHECKING:
    from bot.store.auth_store import AuthStore


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
    """The accounts' store on the configured database (schema created if missing)."""
    from bot.store.auth_store import AuthStore
    from bot.store.database import Database

    db = Database(settings_from_args(args).resolved_database_url)
    db.create_schema()
    return AuthStore(db)


def cmd_users_add(args: argparse.Namespace) -> int:
    """Add an account, or with ``--update`` set a new password for an existing one."""
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
    """Print the accounts and their last sign-in."""
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
    print_table(rows, left=True)
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    """Remove an account (signing out its sessions)."""
    store = _auth_store(args)
    try:
        removed = store.remove_user(args.name)
    finally:
        store.db.close()
    if not removed:
        raise UsageError(f"no user {args.name!r}")
    print(f"user {args.name} removed")
    return 0
