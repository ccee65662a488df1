"""``supportbot`` entry point: parse the arguments, dispatch to the command's handler, and
turn the project's errors into one line and exit status 2 (130 when interrupted)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from bot.cli.ask_cmd import cmd_ask
from bot.cli.db_cmd import cmd_db_status, cmd_db_upgrade
from bot.cli.digest_cmd import cmd_digest
from bot.cli.eval_cmd import cmd_eval, cmd_eval_duplicates
from bot.cli.index_cmd import cmd_index_build, cmd_index_status
from bot.cli.models_cmd import HANDLERS as MODELS_HANDLERS
from bot.cli.parser import build_parser
from bot.cli.run import cmd_run
from bot.cli.threads_cmd import cmd_threads_import
from bot.cli.users_cmd import cmd_users_add, cmd_users_list, cmd_users_remove
from bot.errors import SupportBotError
from bot.logs import setup_logging
from bot.settings import load_settings


def _log_format() -> str:
    """``log_format`` from the settings (environment, ``.env`` or the TOML file). A bad
    setting falls back to text here; the command itself then reports it in one line."""
    try:
        return load_settings().log_format
    except SupportBotError:
        return "text"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``supportbot`` command; returns its exit status."""
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
        ("digest", None): cmd_digest,
        **MODELS_HANDLERS,
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
