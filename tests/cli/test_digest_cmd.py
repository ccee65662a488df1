"""``supportbot digest`` on a real (SQLite) database: what it prints, end to end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.store.database import Database
from bot.store.models import QuestionRow, RoomEventRow


def test_digest_prints_the_waiting_questions_and_the_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    db = Database(f"sqlite:///{(data / 'supportbot.db').resolve()}")
    db.create_schema()
    now_ms = int(time.time() * 1000)
    with db.session() as s:
        for n, (sender, status) in enumerate([("@new:x", "new"), ("@ann:x", "answered_person")]):
            eid = f"$q{n}"
            s.add(
                RoomEventRow(
                    event_id=eid,
                    room_id="!r:x",
                    sender=sender,
                    origin_ts=now_ms - (3 - n) * 3_600_000,
                    event_type="m.room.message",
                    msgtype="m.text",
                    body=f"question {n}?",
                )
            )
            s.flush()
            s.add(
                QuestionRow(
                    event_id=eid, room_id="!r:x", asker=sender, text=f"question {n}?", status=status
                )
            )
    db.close()

    assert main(["digest", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Maintainers' digest, ")
    assert "## Still unanswered (1, oldest first)" in out
    assert "- 3 h ago: [question 0?](/questions/%24q0) — **first question**" in out
    assert "First-time askers waiting: 1." in out
    assert "- Questions: 2 (before: 0)" in out and "- Answered: 50% (before: —)" in out

    with pytest.raises(SystemExit) as exited:
        main(["digest", "--days", "0", "--data-dir", str(data)])
    assert exited.value.code == 2
    assert "--days: must be from 1 to 90, not 0" in capsys.readouterr().err


def test_digest_post_in_the_local_setup_goes_to_the_dashboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.store.digests import DigestStore

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    assert main(["digest", "--post", "--days", "3", "--data-dir", str(data)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# Maintainers' digest, ")
    assert "posted on the dashboard's Digests page" in captured.err
    db = Database(f"sqlite:///{(data / 'supportbot.db').resolve()}")
    try:
        [digest] = DigestStore(db).recent()
    finally:
        db.close()
    assert digest.period.startswith("manual:") and digest.state == "posted"
    assert (digest.text, digest.room_id) == (captured.out, None)
