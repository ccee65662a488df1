"""``supportbot threads import``: our JSON Lines, the Gitter export, the store, the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.corpus.past_answers import PastAnswer
from bot.importers.archive import ImportReport, detect_format
from bot.importers.gitter_format import ESTABLISHED_FIRST_REPLY, ESTABLISHED_MAINTAINER
from bot.importers.jsonl_format import parse_jsonl_record
from bot.importers.past_answers import (
    DEFAULT_GITTER_ROOM_URL,
    ThreadImportError,
    import_threads,
    read_past_answers,
)
from bot.store.database import Database
from bot.store.past_answers import PastAnswerStore

REPO = Path(__file__).resolve().parents[2]


def make_db(url: str) -> Database:
    db = Database(url)
    db.create_schema()
    return db


def record(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "question": f"Question {n}?",
        "answer": f"Answer {n}.",
        "url": f"https://example.org/t/{n}",
        **extra,
    }


def write_jsonl(path: Path, rows: list[Any], *, newline: str = "\n") -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    return path


def msg(
    mid: str,
    text: str,
    user: Any,
    minute: int,
    parent: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    m: dict[str, Any] = {
        "id": mid,
        "text": text,
        "sent": f"2019-03-04T10:{minute:02d}:00.000Z",
        "fromUser": {"username": user, "displayName": user.title()}
        if isinstance(user, str)
        else user,
        **extra,
    }
    if parent is not None:
        m["parentId"] = parent
    return m


def gitter_messages() -> list[Any]:
    """r1: three replies (asker, bob, maint); r2: no replies; r3: only the asker replied."""
    return [
        msg("r1", "How do I **freeze** a layer? 🧊", "alice", 0),
        msg("r2", "Anyone here?", "carol", 1),
        msg("c1", "also my second question", "alice", 2, parent="r1"),
        # out of order in the file: ordered by `sent`, so bob (minute 3) precedes maint (minute 5)
        msg("c3", "Set `layer.trainable = False` before compile().", "Maint", 5, parent="r1"),
        msg("c2", "try trainable=False", "bob", 3, parent="r1"),
        msg("r3", "Thinking aloud", "dave", 6),
        msg("c4", "never mind", "dave", 7, parent="r3"),
        msg("c9", "reply to a root outside the export", "bob", 8, parent="gone"),
    ]


# --- our JSON Lines -------------------------------------------------------------------------------
def test_jsonl_record_fields_and_defaults() -> None:
    pa = parse_jsonl_record(
        record(
            1,
            asked_by="alice",
            answered_by=" bob ",
            created_at="2023-05-01T12:00:00",
            source="stackoverflow",
            extra="ignored",
        )
    )
    assert pa.key == pa.url == "https://example.org/t/1"
    assert (pa.question, pa.answer) == ("Question 1?", "Answer 1.")
    assert (pa.asked_by, pa.answered_by) == ("alice", "bob")
    assert pa.created_at == datetime(2023, 5, 1, 12, tzinfo=UTC)  # naive is UTC
    assert pa.source == "import:jsonl:stackoverflow"
    assert pa.established_by == "imported"

    plain = parse_jsonl_record(record(2, created_at="2023-05-01T14:00:00+02:00", source=None))
    assert plain.source == "import:jsonl"
    assert plain.created_at == datetime(2023, 5, 1, 12, tzinfo=UTC)
    assert plain.asked_by is None and plain.title is None
    assert parse_jsonl_record(record(3, source="jsonl")).source == "import:jsonl"


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"answer": "a", "url": "https://x.org"}, "missing 'question'"),
        (record(1, question="   "), "'question' is empty"),
        (record(1, answer=["a"]), "'answer' must be a string, not an array"),
        (record(1, url="example.org/t/1"), "'url' must start with http"),
        (record(1, url="https://x.org/a b"), "'url' contains whitespace"),
        (record(1, url="https://x.org/" + "a" * 600), "'url' is longer than 512"),
        (record(1, asked_by=7), "'asked_by' must be a string or null, not a number"),
        (record(1, answered_by=True), "'answered_by' must be a string or null, not a boolean"),
        (record(1, created_at="yesterday"), "'created_at' is not an ISO 8601 time"),
        (record(1, created_at=1700000000), "'created_at' must be an ISO 8601 string"),
        (record(1, source="two words"), "'source' must not contain spaces"),
        (record(1, source="s" * 60), "'source' is longer than 51"),
        ([record(1)], "expected a JSON object, got an array"),
    ],
)
def test_jsonl_record_rejects(obj: Any, reason: str) -> None:
    with pytest.raises(ValueError, match="^" + reason.replace("(", r"\(").replace(")", r"\)")):
        parse_jsonl_record(obj)


def test_jsonl_file_with_bom_crlf_unicode_blank_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    rows = [
        record(1, question="Wie friere ich eine Schicht ein? 層を凍結"),  # line 1 (after the BOM)
        "",  # line 2: blank, ignored
        "{not json",  # line 3
        record(2, answer=None),  # line 4
        '"just a string"',  # line 5
        record(3, asked_by={"name": "x"}),  # line 6
        record(4),  # line 7
        record(1, answer="a later copy"),  # line 8: same url as line 1
        "   ",  # line 9: whitespace only, ignored
    ]
    write_jsonl(path, rows, newline="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    (tmp_path / "bad-utf8.jsonl").write_bytes(b'{"question": "\xff"}\n')

    report = ImportReport(str(path))
    items = list(read_past_answers(path, report))
    assert report.format == "jsonl"
    assert [pa.key for pa in items] == ["https://example.org/t/1", "https://example.org/t/4"]
    assert items[0].question == "Wie friere ich eine Schicht ein? 層を凍結"
    assert items[0].answer == "Answer 1."  # no stray "\r"
    assert [(p.where, p.reason.split(":")[0]) for p in report.problems] == [
        ("line 3", "not valid JSON"),
        ("line 4", "'answer' must be a string, not null"),
        ("line 5", "expected a JSON object, got a string"),
        ("line 6", "'asked_by' must be a string or null, not an object"),
        ("line 8", "url repeats line 1; skipped"),
    ]
    assert report.errors == 5

    bad = ImportReport("bad")
    assert list(read_past_answers(tmp_path / "bad-utf8.jsonl", bad)) == []
    assert str(bad.problems[0]) == "line 1: not UTF-8 text (byte 15)"


def test_import_is_idempotent_and_updates_changed_answers(
    tmp_path: Path, database_url: str
) -> None:
    db = make_db(database_url)
    path = write_jsonl(tmp_path / "t.jsonl", [record(1), record(2), "oops", record(3)])
    first = import_threads(db, path)
    assert (first.new, first.updated, first.unchanged, first.errors) == (3, 0, 0, 1)
    assert first.summary() == "3 new, 0 updated, 0 unchanged, 1 errors"

    again = import_threads(db, path)
    assert (again.new, again.updated, again.unchanged, again.errors) == (0, 0, 3, 1)

    write_jsonl(
        path,
        [record(1), record(2, answer="A better answer."), record(3), record(4, source="so")],
    )
    changed = import_threads(db, path, batch_size=2)
    assert (changed.new, changed.updated, changed.unchanged, changed.errors) == (1, 1, 2, 0)
    store = PastAnswerStore(db)
    got = store.get("https://example.org/t/2")
    assert got is not None and got.answer == "A better answer."
    assert store.count_by_source() == {"import:jsonl": 3, "import:jsonl:so": 1}
    db.close()


# --- Gitter ---------------------------------------------------------------------------------------
def test_gitter_array_first_reply_rule(tmp_path: Path) -> None:
    path = tmp_path / "gitter.json"
    path.write_text(json.dumps([*gitter_messages(), 42, {"id": "x", "text": "no user"}]))
    assert detect_format(path) == "gitter"

    report = ImportReport(str(path))
    (pa,) = list(read_past_answers(path, report))
    assert pa.key == pa.url == f"{DEFAULT_GITTER_ROOM_URL}?at=r1"
    assert pa.question == "How do I **freeze** a layer? 🧊"
    assert pa.answer == "try trainable=False"  # first reply not by the asker, by `sent`
    assert (pa.asked_by, pa.answered_by) == ("alice", "bob")
    assert pa.created_at == datetime(2019, 3, 4, 10, 0, tzinfo=UTC)
    assert (pa.source, pa.established_by) == ("import:gitter", ESTABLISHED_FIRST_REPLY)
    assert report.skipped == {
        "thread root without replies": 1,
        "no reply by anyone but the asker": 1,
        "reply whose root is not in the file": 1,
    }
    assert [str(p) for p in report.problems] == [
        "index 8: expected a JSON object, got a number",
        "index 9: missing 'fromUser'",
    ]


def test_gitter_maintainers_are_preferred_and_room_url_base(tmp_path: Path) -> None:
    path = tmp_path / "gitter.json"
    path.write_text(json.dumps(gitter_messages()))
    report = ImportReport(str(path))
    (pa,) = list(
        read_past_answers(
            path,
            report,
            fmt="gitter",
            room_url_base="https://gitter.im/keras-team/keras-io/",
            maintainers=["@maint:gitter.im", "someone-else"],
        )
    )
    assert pa.answer == "Set `layer.trainable = False` before compile()."
    assert (pa.answered_by, pa.established_by) == ("Maint", ESTABLISHED_MAINTAINER)
    assert pa.url == "https://gitter.im/keras-team/keras-io?at=r1"

    # no maintainer replied in the thread: fall back to the first other reply
    report = ImportReport(str(path))
    (pa,) = list(read_past_answers(path, report, maintainers=["nobody"]))
    assert (pa.answered_by, pa.established_by) == ("bob", ESTABLISHED_FIRST_REPLY)

    with pytest.raises(ThreadImportError, match="room-url-base"):
        list(read_past_answers(path, report, room_url_base="gitter.im/x"))


def test_gitter_json_lines_with_string_users_and_bad_items(tmp_path: Path) -> None:
    rows: list[Any] = [
        msg("r1", "Why is my loss NaN?", "eve", 0),
        msg("c1", "lower the learning rate", "frank", 1, parent="r1"),
        msg("c2", "", "grace", 2, parent="r1"),  # empty text: not an answer
        msg("r4", "root two", {"displayName": "Only Display"}, 3),
        msg("c5", "an answer", "frank", 4, parent="r4", sent=None),  # no time: file order
        "{broken",
        msg("r5", "bad time", "eve", 5, sent="not a time"),
        msg("r6", "bad parent", "eve", 6, parentId=["r1"]),
        msg("r1", "duplicate id", "eve", 7),
        msg("r7", "bad user", {"id": "123"}, 8),
        msg("r8", "", "eve", 9),
        msg("c8", "reply to an empty root", "frank", 10, parent="r8"),
    ]
    rows[0]["fromUser"] = "eve"  # a plain string user
    path = write_jsonl(tmp_path / "gitter.jsonl", rows)
    assert detect_format(path) == "gitter"

    report = ImportReport(str(path))
    items = list(read_past_answers(path, report))
    assert [(pa.key.rsplit("=", 1)[1], pa.answer, pa.answered_by) for pa in items] == [
        ("r1", "lower the learning rate", "frank"),
        ("r4", "an answer", "frank"),
    ]
    assert items[0].asked_by == "eve" and items[1].asked_by == "Only Display"
    assert [p.where for p in report.problems] == ["line 6", "line 7", "line 8", "line 9", "line 10"]
    reasons = [p.reason for p in report.problems]
    assert reasons[1].startswith("'sent' is not an ISO 8601 time")
    assert reasons[2] == "'parentId' must be a string, not an array"
    assert reasons[3] == "message id repeats line 1; skipped"
    assert reasons[4] == "'fromUser' has no 'username' or 'displayName' string"
    assert report.skipped == {"thread root without text": 1}


def test_gitter_import_is_idempotent(tmp_path: Path, database_url: str) -> None:
    db = make_db(database_url)
    path = tmp_path / "gitter.json"
    path.write_text(json.dumps(gitter_messages()))
    first = import_threads(db, path)
    assert (first.new, first.unchanged, first.errors) == (1, 0, 0)
    again = import_threads(db, path)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 1)
    # a maintainer preference changes the chosen answer: an update, not a new row
    pref = import_threads(db, path, maintainers=["maint"])
    assert (pref.new, pref.updated, pref.unchanged) == (0, 1, 0)
    assert PastAnswerStore(db).count_by_source() == {"import:gitter": 1}
    db.close()


def test_detect_format(tmp_path: Path) -> None:
    ours = write_jsonl(tmp_path / "ours.jsonl", ["garbage", record(1)])
    assert detect_format(ours) == "jsonl"
    array = tmp_path / "array.json"
    array.write_bytes(b"\xef\xbb\xbf \r\n  [ ]")
    assert detect_format(array) == "gitter"
    replies = write_jsonl(tmp_path / "r.jsonl", [{"id": "1", "parentId": "0"}])
    assert detect_format(replies) == "gitter"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert detect_format(empty) == "jsonl"


def test_unreadable_files_raise(tmp_path: Path) -> None:
    report = ImportReport("x")
    with pytest.raises(ThreadImportError, match="no such file"):
        list(read_past_answers(tmp_path / "missing.jsonl", report))
    with pytest.raises(ThreadImportError, match="not a file"):
        list(read_past_answers(tmp_path, report))
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": "1"},\n oops]')
    with pytest.raises(ThreadImportError, match=r"not a valid JSON array: .* \(line 2, column 2\)"):
        list(read_past_answers(broken, report))
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes(json.dumps(record(1)).encode("utf-16"))
    with pytest.raises(ThreadImportError, match="UTF-16"):
        list(read_past_answers(utf16, report))


# --- the store ------------------------------------------------------------------------------------
def test_store_queries(database_url: str) -> None:
    db = make_db(database_url)
    store = PastAnswerStore(db)
    plus2 = timezone(timedelta(hours=2))
    room = PastAnswer(
        key="thread:$q1",
        question="q",
        answer="a",
        url="https://matrix.to/#/!r:x/$q1",
        created_at=datetime(2024, 1, 1, 14, 0, tzinfo=plus2),
    )
    assert store.upsert(room, room_id="!r:x", question_event_id="$q1") == "new"
    assert store.upsert(room, room_id="!r:x", question_event_id="$q1") == "unchanged"
    assert store.upsert(room, room_id="!r:x", question_event_id="$q2") == "updated"
    got = store.get("thread:$q1")
    assert got == PastAnswer(
        key="thread:$q1",
        question="q",
        answer="a",
        url="https://matrix.to/#/!r:x/$q1",
        created_at=datetime(2024, 1, 1, 12, 0, tzinfo=UTC),  # back in UTC, zone-aware
    )

    imported = [
        PastAnswer(
            key=f"https://x.org/{i}",
            question="q",
            answer="a",
            url=f"https://x.org/{i}",
            source="import:jsonl",
            established_by="imported",
        )
        for i in range(3)
    ]
    counts = store.upsert_many([*imported, imported[0]], batch_size=2)
    assert (counts.new, counts.updated, counts.unchanged) == (3, 0, 1)
    assert [pa.key for pa in store.list_all()] == [
        "https://x.org/0",
        "https://x.org/1",
        "https://x.org/2",
        "thread:$q1",
    ]
    assert store.count_by_source() == {"import:jsonl": 3, "room": 1}
    assert store.delete("https://x.org/1") is True
    assert store.delete("https://x.org/1") is False
    assert store.get("https://x.org/1") is None
    assert store.count_by_source() == {"import:jsonl": 2, "room": 1}
    db.close()


# --- the command, end to end ----------------------------------------------------------------------
def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env["SUPPORTBOT_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_cli_threads_import(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = write_jsonl(tmp_path / "t.jsonl", [record(1), "{bad", record(2, url=3)])
    proc = run_cli("threads", "import", str(path), "--json", data_dir=data)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["format"], out["new"], out["updated"], out["unchanged"], out["errors"]) == (
        "jsonl",
        1,
        0,
        0,
        2,
    )
    assert out["stored"] == {"import:jsonl": 1}
    assert f"{path}: line 2: not valid JSON" in proc.stderr
    assert f"{path}: line 3: 'url' must be a string, not a number" in proc.stderr

    again = run_cli("threads", "import", str(path), data_dir=data)
    assert again.returncode == 0, again.stderr
    assert "0 new, 0 updated, 1 unchanged, 2 errors" in again.stdout

    gitter = tmp_path / "gitter.json"
    gitter.write_text(json.dumps(gitter_messages()))
    proc = run_cli(
        "threads",
        "import",
        str(gitter),
        "--json",
        "--maintainers",
        "maint",
        "--room-url-base",
        "https://gitter.im/org/room",
        data_dir=data,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["format"], out["new"], out["skipped"]["thread root without replies"]) == (
        "gitter",
        1,
        1,
    )
    assert out["stored"] == {"import:gitter": 1, "import:jsonl": 1}


def test_cli_threads_import_failures(tmp_path: Path) -> None:
    data = tmp_path / "data"
    missing = run_cli("threads", "import", str(tmp_path / "nope.jsonl"), data_dir=data)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("supportbot: error: cannot read")
    assert missing.stdout == ""

    bad = write_jsonl(tmp_path / "bad.jsonl", [f"{{bad {i}" for i in range(60)])
    nothing = run_cli("threads", "import", str(bad), "--json", data_dir=data)
    assert nothing.returncode == 2 and nothing.stdout == ""
    lines = nothing.stderr.strip().splitlines()
    assert len(lines) == 52  # 50 problems, the remainder count, the one-line error
    assert lines[50] == f"{bad}: ... and 10 more errors"
    assert lines[51] == f"supportbot: error: {bad}: nothing to import (60 errors, 0 skipped)"

    lonely = tmp_path / "lonely.json"
    lonely.write_text(json.dumps([msg("r1", "anyone?", "alice", 0)]))
    proc = run_cli("threads", "import", str(lonely), "--format", "gitter", data_dir=data)
    assert proc.returncode == 2
    assert "nothing to import (0 errors, 1 skipped)" in proc.stderr

    usage = run_cli("threads", "import", str(lonely), "--format", "xml", data_dir=data)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_a_deeply_nested_line_is_skipped_like_any_malformed_line(tmp_path: Path) -> None:
    """json.loads raises RecursionError, not JSONDecodeError, on deep nesting: that line is
    reported and skipped, the rest is imported, and the command prints no traceback."""
    deep = '{"url": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write_jsonl(tmp_path / "deep.jsonl", [record(1), deep, record(2)])
    report = ImportReport(str(path))
    assert [pa.url for pa in read_past_answers(path, report)] == [
        record(1)["url"],
        record(2)["url"],
    ]
    assert [str(p) for p in report.problems] == ["line 2: not valid JSON: nested too deeply"]

    proc = run_cli("threads", "import", str(path), data_dir=tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}: line 2: not valid JSON: nested too deeply" in proc.stderr
    assert "2 new, 0 updated, 0 unchanged, 1 errors" in proc.stdout

    array = tmp_path / "deep.json"
    array.write_text("[" * 100_000 + "]" * 100_000)
    proc = run_cli("threads", "import", str(array), data_dir=tmp_path / "data")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"supportbot: error: {array}: not a valid JSON array: nested too deeply"
    )
