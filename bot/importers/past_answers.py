"""Import answered threads from archive files into the ``past_answers`` table.

``supportbot threads import FILE`` reads one of two formats, checks every record, and upserts
the valid ones by key, so importing the same file again changes nothing. Malformed lines or
items are reported (line number, or array index, and reason) and skipped; the rest goes in.

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

import codecs
import json
from collections.abc import Collection, Generator, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from bot.chat.events import storable_text
from bot.corpus.past_answers import PastAnswer
from bot.errors import FatalError
from bot.store.database import Database
from bot.store.past_answers import PastAnswerStore, UpsertCounts
from bot.timeutil import as_utc

DEFAULT_GITTER_ROOM_URL = "https://gitter.im/keras-team/keras"
FORMATS = ("auto", "jsonl", "gitter")
Format = Literal["auto", "jsonl", "gitter"]

JSONL_SOURCE = "import:jsonl"
GITTER_SOURCE = "import:gitter"
ESTABLISHED_JSONL = "imported"
ESTABLISHED_MAINTAINER = "imported:gitter-maintainer-reply"
ESTABLISHED_FIRST_REPLY = "imported:gitter-first-reply"

SKIP_NO_REPLIES = "thread root without replies"
SKIP_EMPTY_ROOT = "thread root without text"
SKIP_ONLY_ASKER = "no reply by anyone but the asker"
SKIP_ORPHAN = "reply whose root is not in the file"

MAX_KEY_CHARS = 512  # PastAnswerRow.key
MAX_USER_CHARS = 255
MAX_TITLE_CHARS = 1024
MAX_SOURCE_LABEL_CHARS = 64 - len(JSONL_SOURCE) - 1
MAX_PROBLEMS_KEPT = 1000  # counted beyond this, not kept
_SNIFF_LINES = 50


class ThreadImportError(FatalError):
    """The file cannot be read, or holds nothing importable."""


TOO_DEEP = "not valid JSON: nested too deeply"


class _Invalid(ValueError):
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


# --- small validators --------------------------------------------------------------------------
def _kind(value: object) -> str:
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


def _required_text(obj: dict[str, Any], name: str) -> str:
    if name not in obj:
        raise _Invalid(f"missing {name!r}")
    value = obj[name]
    if not isinstance(value, str):
        raise _Invalid(f"{name!r} must be a string, not {_kind(value)}")
    if not value.strip():
        raise _Invalid(f"{name!r} is empty")
    return value.strip()


def _optional_text(obj: dict[str, Any], name: str, max_chars: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{name!r} must be a string or null, not {_kind(value)}")
    value = value.strip()
    if len(value) > max_chars:
        raise _Invalid(f"{name!r} is longer than {max_chars} characters")
    return value or None


def _optional_time(obj: dict[str, Any], name: str) -> datetime | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{name!r} must be an ISO 8601 string, not {_kind(value)}")
    if not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _Invalid(f"{name!r} is not an ISO 8601 time: {value[:40]!r}") from None
    return as_utc(parsed)


def _check_url(url: str, what: str = "'url'") -> str:
    if not url.startswith(("http://", "https://")):
        raise _Invalid(f"{what} must start with http:// or https://")
    if any(c.isspace() for c in url):
        raise _Invalid(f"{what} contains whitespace")
    if len(url) > MAX_KEY_CHARS:
        raise _Invalid(f"{what} is longer than {MAX_KEY_CHARS} characters")
    return url


def _stored_source(obj: dict[str, Any]) -> str:
    label = _optional_text(obj, "source", 10_000)
    if label is None or label in ("jsonl", JSONL_SOURCE):
        return JSONL_SOURCE
    if any(c.isspace() or not c.isprintable() for c in label):
        raise _Invalid("'source' must not contain spaces")
    if len(label) > MAX_SOURCE_LABEL_CHARS:
        raise _Invalid(f"'source' is longer than {MAX_SOURCE_LABEL_CHARS} characters")
    return f"{JSONL_SOURCE}:{label}"


def parse_jsonl_record(obj: object) -> PastAnswer:
    """One record of our JSON Lines format; raises ``ValueError`` with the reason."""
    if not isinstance(obj, dict):
        raise _Invalid(f"expected a JSON object, got {_kind(obj)}")
    question = _required_text(obj, "question")
    answer = _required_text(obj, "answer")
    url = _check_url(_required_text(obj, "url"))
    return PastAnswer(
        key=url,
        question=question,
        answer=answer,
        url=url,
        title=_optional_text(obj, "title", MAX_TITLE_CHARS),
        asked_by=_optional_text(obj, "asked_by", MAX_USER_CHARS),
        answered_by=_optional_text(obj, "answered_by", MAX_USER_CHARS),
        created_at=_optional_time(obj, "created_at"),
        source=_stored_source(obj),
        established_by=ESTABLISHED_JSONL,
    )


# --- reading files -----------------------------------------------------------------------------
def _open_error(path: Path, exc: OSError) -> ThreadImportError:
    return ThreadImportError(f"cannot read {path}: {exc.strerror or exc}")


def _check_encoding(head: bytes, path: Path) -> None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ThreadImportError(f"{path}: UTF-16 text is not supported; save it as UTF-8")


def _json_lines(path: Path, report: ImportReport) -> Generator[tuple[str, object], None, None]:
    """(``"line N"``, parsed value) per non-blank line; bad lines go to ``report``."""
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                where = f"line {lineno}"
                if lineno == 1:
                    _check_encoding(raw, path)
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
        raise _open_error(path, exc) from None


def _json_array(path: Path) -> list[Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _open_error(path, exc) from None
    _check_encoding(data, path)
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
        raise ThreadImportError(f"{path}: expected a JSON array, got {_kind(value)}")
    return value


def _starts_with_bracket(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
            _check_encoding(head, path)
            head = head.removeprefix(codecs.BOM_UTF8)
            while head and not head.strip():
                head = fh.read(4096)
    except OSError as exc:
        raise _open_error(path, exc) from None
    return head.lstrip()[:1] == b"["


def detect_format(path: Path) -> Literal["jsonl", "gitter"]:
    """``gitter`` for a JSON array or Gitter message lines, else ``jsonl`` (see module doc)."""
    if _starts_with_bracket(path):
        return "gitter"
    lines = _json_lines(path, ImportReport(str(path)))  # problems are reported on the real read
    try:
        for seen, (_where, obj) in enumerate(lines, 1):
            if isinstance(obj, dict):
                return "gitter" if ("fromUser" in obj or "parentId" in obj) else "jsonl"
            if seen >= _SNIFF_LINES:
                break
    finally:
        lines.close()
    return "jsonl"


# --- our JSON Lines ----------------------------------------------------------------------------
def _read_jsonl(path: Path, report: ImportReport) -> Iterator[PastAnswer]:
    first_seen: dict[str, str] = {}
    for where, obj in _json_lines(path, report):
        try:
            pa = parse_jsonl_record(obj)
        except _Invalid as exc:
            report.problem(where, str(exc))
            continue
        if pa.key in first_seen:
            report.problem(where, f"url repeats {first_seen[pa.key]}; skipped")
            continue
        first_seen[pa.key] = where
        yield pa


# --- Gitter export -----------------------------------------------------------------------------
@dataclass(frozen=True)
class GitterMessage:
    id: str
    text: str
    user: str
    sent: datetime | None
    parent: str | None
    where: str
    position: int


def _user_key(name: str) -> str:
    """``@Alice:gitter.im`` and ``alice`` are the same person."""
    return name.strip().lstrip("@").split(":", 1)[0].casefold()


def _gitter_id(obj: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _Invalid(f"missing {name!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(f"{name!r} must be a string, not {_kind(value)}")
    text = str(value).strip()
    if not text or any(c.isspace() for c in text):
        raise _Invalid(f"{name!r} is empty or contains whitespace")
    return text


def _gitter_user(obj: dict[str, Any]) -> str:
    value = obj.get("fromUser")
    if value is None:
        raise _Invalid("missing 'fromUser'")
    if isinstance(value, dict):
        for name in ("username", "displayName"):
            candidate = value.get(name)
            if isinstance(candidate, str) and candidate.strip():
                user = candidate.strip()
                break
        else:
            raise _Invalid("'fromUser' has no 'username' or 'displayName' string")
    elif isinstance(value, str) and value.strip():
        user = value.strip()
    else:
        raise _Invalid(f"'fromUser' must be an object or a non-empty string, not {_kind(value)}")
    if len(user) > MAX_USER_CHARS:
        raise _Invalid(f"'fromUser' name is longer than {MAX_USER_CHARS} characters")
    return user


def parse_gitter_message(obj: object, *, where: str = "", position: int = 0) -> GitterMessage:
    """One Gitter export message; raises ``ValueError`` with the reason."""
    if not isinstance(obj, dict):
        raise _Invalid(f"expected a JSON object, got {_kind(obj)}")
    message_id = _gitter_id(obj, "id", required=True)
    assert message_id is not None
    if "text" not in obj:
        raise _Invalid("missing 'text'")
    text = obj["text"]
    if not isinstance(text, str):
        raise _Invalid(f"'text' must be a string, not {_kind(text)}")
    parent = _gitter_id(obj, "parentId", required=False)
    if parent == message_id:
        raise _Invalid("'parentId' is the message's own id")
    return GitterMessage(
        id=message_id,
        text=text.strip(),
        user=_gitter_user(obj),
        sent=_optional_time(obj, "sent"),
        parent=parent,
        where=where,
        position=position,
    )


def _thread_root(msg: GitterMessage, by_id: dict[str, GitterMessage]) -> GitterMessage | None:
    """Follow ``parentId`` up to a top-level message (None if missing or a loop)."""
    seen = {msg.id}
    current = msg
    while current.parent is not None:
        parent = by_id.get(current.parent)
        if parent is None or parent.id in seen:
            return None
        seen.add(parent.id)
        current = parent
    return current


def _pick_answer(
    root: GitterMessage, replies: list[GitterMessage], maintainers: Collection[str]
) -> tuple[GitterMessage, str] | None:
    asker = _user_key(root.user)
    others = [r for r in replies if r.text and _user_key(r.user) != asker]
    if maintainers:
        for reply in others:
            if _user_key(reply.user) in maintainers:
                return reply, ESTABLISHED_MAINTAINER
    if others:
        return others[0], ESTABLISHED_FIRST_REPLY
    return None


def gitter_threads(
    items: Iterable[tuple[str, object]],
    report: ImportReport,
    *,
    room_url_base: str = DEFAULT_GITTER_ROOM_URL,
    maintainers: Iterable[str] = (),
) -> Iterator[PastAnswer]:
    """Question/answer pairs from (where, message) items; problems and skips go to ``report``."""
    base = room_url_base.rstrip("/")
    wanted = {_user_key(m) for m in maintainers if m.strip()}
    by_id: dict[str, GitterMessage] = {}
    for position, (where, obj) in enumerate(items):
        try:
            msg = parse_gitter_message(obj, where=where, position=position)
        except _Invalid as exc:
            report.problem(where, str(exc))
            continue
        if msg.id in by_id:
            report.problem(where, f"message id repeats {by_id[msg.id].where}; skipped")
            continue
        by_id[msg.id] = msg

    threads: dict[str, list[GitterMessage]] = {}
    for msg in by_id.values():
        if msg.parent is None:
            continue
        root = _thread_root(msg, by_id)
        if root is None:
            report.skip(SKIP_ORPHAN)
            continue
        threads.setdefault(root.id, []).append(msg)

    for root in by_id.values():
        if root.parent is not None:
            continue
        replies = threads.get(root.id)
        if not replies:
            report.skip(SKIP_NO_REPLIES)
            continue
        if not root.text:
            report.skip(SKIP_EMPTY_ROOT)
            continue
        replies.sort(
            key=lambda m: (m.sent is None, m.sent.timestamp() if m.sent else 0.0, m.position)
        )
        picked = _pick_answer(root, replies, wanted)
        if picked is None:
            report.skip(SKIP_ONLY_ASKER)
            continue
        answer, rule = picked
        url = f"{base}?at={root.id}"
        if len(url) > MAX_KEY_CHARS:
            report.problem(root.where, f"thread URL is longer than {MAX_KEY_CHARS} characters")
            continue
        yield PastAnswer(
            key=url,
            question=root.text,
            answer=answer.text,
            url=url,
            asked_by=root.user,
            answered_by=answer.user,
            created_at=root.sent,
            source=GITTER_SOURCE,
            established_by=rule,
        )


# --- the import --------------------------------------------------------------------------------
def check_room_url_base(url: str) -> str:
    """The ``--room-url-base`` value, checked; raises ``ThreadImportError``."""
    base = url.strip().rstrip("/")
    try:
        _check_url(base, "--room-url-base")
    except _Invalid as exc:
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
        yield from map(_storable, _read_jsonl(path, report))
        return
    items: Iterable[tuple[str, object]]
    if _starts_with_bracket(path):
        items = ((f"index {i}", obj) for i, obj in enumerate(_json_array(path)))
    else:
        items = _json_lines(path, report)
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
    "ESTABLISHED_FIRST_REPLY",
    "ESTABLISHED_JSONL",
    "ESTABLISHED_MAINTAINER",
    "GITTER_SOURCE",
    "JSONL_SOURCE",
    "GitterMessage",
    "ImportProblem",
    "ImportReport",
    "ThreadImportError",
    "detect_format",
    "gitter_threads",
    "import_threads",
    "parse_gitter_message",
    "parse_jsonl_record",
    "read_past_answers",
]
