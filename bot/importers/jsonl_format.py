"""Our JSON Lines import format (see ``bot.importers.past_answers`` for its description): one
checked ``PastAnswer`` per line, keyed by its URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.corpus.past_answers import PastAnswer
from bot.importers.archive import (
    MAX_USER_CHARS,
    ImportReport,
    InvalidRecord,
    check_url,
    json_lines,
    kind_of,
    optional_time,
)

JSONL_SOURCE = "import:jsonl"
ESTABLISHED_JSONL = "imported"
MAX_TITLE_CHARS = 1024
MAX_SOURCE_LABEL_CHARS = 64 - len(JSONL_SOURCE) - 1


def _required_text(obj: dict[str, Any], name: str) -> str:
    if name not in obj:
        raise InvalidRecord(f"missing {name!r}")
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidRecord(f"{name!r} must be a string, not {kind_of(value)}")
    if not value.strip():
        raise InvalidRecord(f"{name!r} is empty")
    return value.strip()


def _optional_text(obj: dict[str, Any], name: str, max_chars: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRecord(f"{name!r} must be a string or null, not {kind_of(value)}")
    value = value.strip()
    if len(value) > max_chars:
        raise InvalidRecord(f"{name!r} is longer than {max_chars} characters")
    return value or None


def _stored_source(obj: dict[str, Any]) -> str:
    label = _optional_text(obj, "source", 10_000)
    if label is None or label in ("jsonl", JSONL_SOURCE):
        return JSONL_SOURCE
    if any(c.isspace() or not c.isprintable() for c in label):
        raise InvalidRecord("'source' must not contain spaces")
    if len(label) > MAX_SOURCE_LABEL_CHARS:
        raise InvalidRecord(f"'source' is longer than {MAX_SOURCE_LABEL_CHARS} characters")
    return f"{JSONL_SOURCE}:{label}"


def parse_jsonl_record(obj: object) -> PastAnswer:
    """One record of our JSON Lines format; raises ``ValueError`` with the reason."""
    if not isinstance(obj, dict):
        raise InvalidRecord(f"expected a JSON object, got {kind_of(obj)}")
    question = _required_text(obj, "question")
    answer = _required_text(obj, "answer")
    url = check_url(_required_text(obj, "url"))
    return PastAnswer(
        key=url,
        question=question,
        answer=answer,
        url=url,
        title=_optional_text(obj, "title", MAX_TITLE_CHARS),
        asked_by=_optional_text(obj, "asked_by", MAX_USER_CHARS),
        answered_by=_optional_text(obj, "answered_by", MAX_USER_CHARS),
        created_at=optional_time(obj, "created_at"),
        source=_stored_source(obj),
        established_by=ESTABLISHED_JSONL,
    )


def read_jsonl(path: Path, report: ImportReport) -> Iterator[PastAnswer]:
    first_seen: dict[str, str] = {}
    for where, obj in json_lines(path, report):
        try:
            pa = parse_jsonl_record(obj)
        except InvalidRecord as exc:
            report.problem(where, str(exc))
            continue
        if pa.key in first_seen:
            report.problem(where, f"url repeats {first_seen[pa.key]}; skipped")
            continue
        first_seen[pa.key] = where
        yield pa
