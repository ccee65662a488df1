"""Reading an import archive: JSON Lines or one JSON array from a file, and the field checks
both formats share. A bad line or item goes into the ``ImportReport`` (where, and why) and the
rest is read; only an unreadable file stops the import (``ThreadImportError``)."""

from __future__ import annotations

import codecs
import json
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from bot.errors import FatalError
from bot.store.past_answers import UpsertCounts
from bot.timeutil import as_utc

MAX_KEY_CHARS = 512  # PastAnswerRow.key
MAX_USER_CHARS = 255
MAX_PROBLEMS_KEPT = 1000  # counted beyond this, not kept
_SNIFF_LINES = 50


class ThreadImportError(FatalError):
    """The file cannot be read, or holds nothing importable."""


TOO_DEEP = "not valid JSON: nested too deeply"


class InvalidRecord(ValueError):
    """One record is malformed; the message is the reason shown to the user."""


@dataclass(frozen=True)
class ImportProblem:
    where: str  # "line 7" (1-based) or "index 3" (0-based position in a JSON array)
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did. ``errors`` counts every problem; ``problems`` keeps the first ones."""

    path: str
    format: str = ""
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: int = 0
    problems: list[ImportProblem] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def problem(self, where: str, reason: str) -> None:
        self.errors += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(ImportProblem(where, reason))

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def add_counts(self, counts: UpsertCounts) -> None:
        self.new += counts.new
        self.updated += counts.updated
        self.unchanged += counts.unchanged

    @property
    def imported(self) -> int:
        """Valid records written or found unchanged."""
        return self.new + self.updated + self.unchanged

    def summary(self) -> str:
        return (
            f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.errors} errors"
        )

    def to_json(self, max_problems: int = 50) -> dict[str, Any]:
        return {
            "file": self.path,
            "format": self.format,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "imported": self.imported,
            "errors": self.errors,
            "skipped": dict(self.skipped),
            "problems": [
                {"where": p.where, "reason": p.reason} for p in self.problems[:max_problems]
            ],
        }


# --- field checks ------------------------------------------------------------------------------
def kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def optional_time(obj: dict[str, Any], name: str) -> datetime | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRecord(f"{name!r} must be an ISO 8601 string, not {kind_of(value)}")
    if not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRecord(f"{name!r} is not an ISO 8601 time: {value[:40]!r}") from None
    return as_utc(parsed)


def check_url(url: str, what: str = "'url'") -> str:
    if not url.startswith(("http://", "https://")):
        raise InvalidRecord(f"{what} must start with http:// or https://")
    if any(c.isspace() for c in url):
        raise InvalidRecord(f"{what} contains whitespace")
    if len(url) > MAX_KEY_CHARS:
        raise InvalidRecord(f"{what} is longer than {MAX_KEY_CHARS} characters")
    return url


# --- reading files -----------------------------------------------------------------------------
def open_error(path: Path, exc: OSError) -> ThreadImportError:
    return ThreadImportError(f"cannot read {path}: {exc.strerror or exc}")


def check_encoding(head: bytes, path: Path) -> None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ThreadImportError(f"{path}: UTF-16 text is not supported; save it as UTF-8")


def json_lines(path: Path, report: ImportReport) -> Generator[tuple[str, object], None, None]:
    """(``"line N"``, parsed value) per non-blank line; bad lines go to ``report``."""
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                where = f"line {lineno}"
                if lineno == 1:
                    check_encoding(raw, path)
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    report.problem(where, f"not UTF-8 text (byte {exc.start + 1})")
                    continue
                if not text.strip():
                    continue
                try:
                    yield where, json.loads(text)
                except json.JSONDecodeError as exc:
                    report.problem(where, f"not valid JSON: {exc.msg} (column {exc.colno})")
                except RecursionError:  # json raises this, not JSONDecodeError, on deep nesting
                    report.problem(where, TOO_DEEP)
    except OSError as exc:
        raise open_error(path, exc) from None


def json_array(path: Path) -> list[Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise open_error(path, exc) from None
    check_encoding(data, path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ThreadImportError(f"{path}: not UTF-8 text (byte {exc.start + 1})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ThreadImportError(
            f"{path}: not a valid JSON array: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise ThreadImportError(f"{path}: not a valid JSON array: nested too deeply") from None
    if not isinstance(value, list):
        raise ThreadImportError(f"{path}: expected a JSON array, got {kind_of(value)}")
    return value


def starts_with_bracket(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
            check_encoding(head, path)
            head = head.removeprefix(codecs.BOM_UTF8)
            while head and not head.strip():
                head = fh.read(4096)
    except OSError as exc:
        raise open_error(path, exc) from None
    return head.lstrip()[:1] == b"["


def detect_format(path: Path) -> Literal["jsonl", "gitter"]:
    """``gitter`` for a JSON array or Gitter message lines, else ``jsonl`` (see module doc)."""
    if starts_with_bracket(path):
        return "gitter"
    lines = json_lines(path, ImportReport(str(path)))  # problems are reported on the real read
    try:
        for seen, (_where, obj) in enumerate(lines, 1):
            if isinstance(obj, dict):
                return "gitter" if ("fromUser" in obj or "parentId" in obj) else "jsonl"
            if seen >= _SNIFF_LINES:
                break
    finally:
        lines.close()
    return "jsonl"
