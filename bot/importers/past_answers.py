"""Import answered threads from archive files into the ``past_answers`` table.

``supportbot threads import FILE`` reads one of two formats, checks every record, and upserts
the valid ones by key, so importing the same file again changes nothing. Malformed lines or
items are reported (line number, or array index, and reason) and skipped; the rest goes in.
This module picks the format and writes the store; ``archive`` reads the file (and holds the
field checks both formats share), ``jsonl_format`` and ``gitter_format`` turn records into
past answers.

Our JSON Lines format (``--format jsonl``)
------------------------------------------
One JSON object per line, UTF-8 (a leading byte-order mark and CRLF line ends are fine; blank
lines are ignored)::

    {"question": "How do I freeze a layer?", "answer": "Set layer.trainable = False ...",
     "url": "https://github.com/keras-team/keras/discussions/123",
     "asked_by": "alice", "answered_by": "bob",
     "created_at": "2023-05-01T12:00:00Z", "source": "github-discussions"}

- ``question``, ``answer``, ``url``: required, non-empty strings. ``url`` must start with
  ``http://`` or ``https://``, contain no spaces and be at most 512 characters; it is the
  record's key, so one URL is one past answer (a URL repeated later in the same file is
  reported and skipped).
- ``asked_by``, ``answered_by``: optional strings (at most 255 characters), or null.
- ``created_at``: optional ISO 8601 time, with or without a zone (no zone means UTC), or null.
- ``title``: optional string (at most 1,024 characters); by default the first line of the
  question is the title.
- ``source``: optional short label of where the pair came from. It is stored as
  ``import:jsonl:<source>`` (at most 51 characters, no spaces), or as plain ``import:jsonl``
  when absent, empty or ``jsonl``.
- Other keys are ignored. Every record is stored with ``established_by = "imported"``.

Gitter message export (``--format gitter``)
-------------------------------------------
The legacy Gitter room export: a JSON array of message objects, or the same objects one per
line. The fields read are ``id`` (string), ``text`` (string), ``sent`` (ISO 8601 time,
optional), ``fromUser`` (an object with ``username``, or ``displayName`` when there is no
username, or just the user name as a string) and ``parentId`` (the thread root's id, for a
reply in a thread; absent or null for a top-level message). Other fields are ignored.

Each top-level message that has thread replies becomes one past answer:

- question: the root message's text; asked by its sender, created at its ``sent`` time.
- answer: with ``--maintainers a,b``, the earliest reply by one of those users
  (``established_by = "imported:gitter-maintainer-reply"``); otherwise, or when none of them
  replied, the earliest reply by anyone other than the asker
  (``established_by = "imported:gitter-first-reply"``). Replies are ordered by ``sent``, then
  by their place in the file. Maintainer names match Gitter usernames case-insensitively; a
  Matrix id such as ``@alice:gitter.im`` matches the username ``alice``.
- url and key: ``--room-url-base`` + ``?at=`` + the root's id (default base
  ``https://gitter.im/keras-team/keras``); source ``import:gitter``.

Roots without replies, roots with empty text, threads where only the asker replied, and
replies whose root is not in the file are skipped and counted, not reported as errors.

With ``--format auto`` (the default): a file whose first non-space character is ``[`` is a
Gitter array; a JSON Lines file whose first object has a ``fromUser`` or ``parentId`` key is
a Gitter export; anything else is our JSON Lines format.

JSON Lines files are read line by line (only the keys seen so far are kept, to catch
repeats); a Gitter export is read whole, since threads are assembled from the full file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Literal

from bot.chat.events import storable_text
from bot.corpus.past_answers import PastAnswer
from bot.importers.archive import (
    ImportReport,
    InvalidRecord,
    ThreadImportError,
    check_url,
    detect_format,
    json_array,
    json_lines,
    starts_with_bracket,
)
from bot.importers.gitter_format import DEFAULT_GITTER_ROOM_URL, gitter_threads
from bot.importers.jsonl_format import read_jsonl
from bot.store.database import Database
from bot.store.past_answers import PastAnswerStore

FORMATS = ("auto", "jsonl", "gitter")
Format = Literal["auto", "jsonl", "gitter"]


# --- the import --------------------------------------------------------------------------------
def check_room_url_base(url: str) -> str:
    """The ``--room-url-base`` value, checked; raises ``ThreadImportError``."""
    base = url.strip().rstrip("/")
    try:
        check_url(base, "--room-url-base")
    except InvalidRecord as exc:
        raise ThreadImportError(str(exc)) from None
    if "?" in base or "#" in base:
        raise ThreadImportError("--room-url-base must not contain '?' or '#'")
    return base


def read_past_answers(
    path: Path,
    report: ImportReport,
    *,
    fmt: Format = "auto",
    room_url_base: str = DEFAULT_GITTER_ROOM_URL,
    maintainers: Iterable[str] = (),
) -> Iterator[PastAnswer]:
    """The valid records of ``path``; sets ``report.format`` and records problems and skips.

    Raises ``ThreadImportError`` when the file cannot be read (at the first ``next``).
    """
    if fmt not in FORMATS:
        raise ThreadImportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    base = check_room_url_base(room_url_base)
    if not path.is_file():
        reason = "no such file" if not path.exists() else "not a file"
        raise ThreadImportError(f"cannot read {path}: {reason}")
    chosen = detect_format(path) if fmt == "auto" else fmt
    report.format = chosen
    if chosen == "jsonl":
        yield from map(_storable, read_jsonl(path, report))
        return
    items: Iterable[tuple[str, object]]
    if starts_with_bracket(path):
        items = ((f"index {i}", obj) for i, obj in enumerate(json_array(path)))
    else:
        items = json_lines(path, report)
    threads = gitter_threads(items, report, room_url_base=base, maintainers=maintainers)
    yield from map(_storable, threads)


def _storable(record: PastAnswer) -> PastAnswer:
    """JSON's "\\ud800" escapes decode to lone surrogates, which no database can store: the
    record keeps U+FFFD in their place (as room events do) instead of failing the import."""
    changes: dict[str, Any] = {
        f.name: storable_text(value)
        for f in fields(record)
        if isinstance(value := getattr(record, f.name), str) and storable_text(value) != value
    }
    return replace(record, **changes) if changes else record


def import_threads(
    db: Database,
    path: Path,
    *,
    fmt: Format = "auto",
    room_url_base: str = DEFAULT_GITTER_ROOM_URL,
    maintainers: Iterable[str] = (),
    batch_size: int = 500,
) -> ImportReport:
    """Read ``path`` and upsert its valid records into ``past_answers``, in batches.

    Raises ``ThreadImportError`` when the file cannot be read. A file with nothing valid
    returns a report whose ``imported`` is 0; callers decide whether that is an error.
    """
    report = ImportReport(str(path))
    records = read_past_answers(
        path, report, fmt=fmt, room_url_base=room_url_base, maintainers=maintainers
    )
    report.add_counts(PastAnswerStore(db).upsert_many(records, batch_size=batch_size))
    return report


__all__ = [
    "DEFAULT_GITTER_ROOM_URL",
    "FORMATS",
    "Format",
    "ImportReport",
    "ThreadImportError",
    "check_room_url_base",
    "import_threads",
    "read_past_answers",
]
