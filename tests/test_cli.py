"""The `supportbot` command end to end on the tiny corpus, as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

QUESTION = "How do I stop training when the validation loss stops improving?"


def run_cli(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update({"SUPPORTBOT_DATA_DIR": str(data_dir), "SUPPORTBOT_DEVICE": "cpu"})
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import MINI_DOCS

    data = tmp_path_factory.mktemp("cli-data")
    out = run_cli("index", "build", "--no-keras", "--docs-dir", str(MINI_DOCS), data_dir=data)
    assert "published" in out.stdout
    assert "6 documents" in out.stdout
    return data


def test_help_lists_commands(tmp_path: Path) -> None:
    out = run_cli("--help", data_dir=tmp_path).stdout
    for word in ("index", "ask", "eval"):
        assert word in out
    assert "--docs-dir" in run_cli("index", "build", "--help", data_dir=tmp_path).stdout


def test_ask_prints_the_reply_as_read(data_dir: Path) -> None:
    out = run_cli("ask", QUESTION, data_dir=data_dir).stdout
    assert "1. Training with fit() (https://keras.io/guides/training_loops/)" in out
    assert "Confidence:" in out
    # The guide's code cell, indented as code under its link; no Markdown escapes or fences.
    assert (
        '\n       callback = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3)\n' in out
    )
    assert "\\" not in out and "```" not in out


def test_ask_markdown(data_dir: Path) -> None:
    out = run_cli("ask", QUESTION, "--markdown", data_dir=data_dir).stdout
    assert "[Training with fit()](https://keras.io/guides/training_loops/)" in out
    assert '   ```python\n   callback = keras.callbacks.EarlyStopping(monitor="val_loss"' in out
    assert "Confidence:" in out


def test_ask_json(data_dir: Path) -> None:
    reply = json.loads(run_cli("ask", QUESTION, "--json", data_dir=data_dir).stdout)
    assert reply["sources"][0]["doc_id"] == "guides/training_loops"
    assert reply["sources"][0]["snippet"] == (
        'callback = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3)\n'
        "model.fit(x, y, validation_split=0.2, callbacks=[callback])"
    )
    assert set(reply["sources"][0]) >= {"doc_id", "title", "url", "score", "excerpt"}
    assert 0.0 <= reply["confidence"] <= 1.0
    assert reply["index_version"]
    assert 1 <= len(reply["sources"]) <= 3


def test_ask_notes_a_keras2_api(data_dir: Path) -> None:
    question = "model.fit_generator(train_gen, epochs=5) fails after upgrading, what now?"
    reply = json.loads(run_cli("ask", question, "--json", data_dir=data_dir).stdout)
    assert [n["key"] for n in reply["notes"]] == ["fit_generator"]
    assert "**Keras 3:** `fit_generator` was removed" in reply["markdown"]
    out = run_cli("ask", question, data_dir=data_dir).stdout
    assert "Keras 3: `fit_generator` was removed; use `model.fit(...)`" in out  # as it reads
    raw = run_cli("ask", question, "--markdown", data_dir=data_dir).stdout
    assert "**Keras 3:** `fit_generator` was removed; use `model.fit(...)`" in raw


def test_rebuild_unchanged(data_dir: Path) -> None:
    from tests.conftest import MINI_DOCS

    out = run_cli("index", "build", "--no-keras", "--docs-dir", str(MINI_DOCS), data_dir=data_dir)
    assert "unchanged" in out.stdout and "embedded 0" in out.stdout


def test_index_status(data_dir: Path) -> None:
    out = run_cli("index", "status", data_dir=data_dir).stdout
    assert "current index:" in out and "all-MiniLM-L6-v2" in out
    manifest = json.loads(run_cli("index", "status", "--json", data_dir=data_dir).stdout)
    assert manifest["documents"] == 6


def test_eval_json(data_dir: Path, tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    rows = [
        {
            "id": "a",
            "question": QUESTION,
            "relevant": ["guides/training_loops"],
            "answerable_from_docs": True,
        },
        {
            "id": "b",
            "question": "How do I save my model to a single file?",
            "relevant": ["guides/saving_models"],
            "answerable_from_docs": True,
        },
        {
            "id": "c",
            "question": "Why does my GPU driver crash on boot?",
            "relevant": [],
            "answerable_from_docs": False,
        },
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = json.loads(run_cli("eval", str(questions), "--json", data_dir=data_dir).stdout)
    assert set(report) >= {
        "n",
        "recall@1",
        "recall@5",
        "recall@10",
        "mrr@10",
        "ndcg@10",
        "unanswerable_below_threshold",
    }
    assert report["n"] == 2 and report["recall@1"] == 1.0 and report["mrr@10"] == 1.0
    table = run_cli("eval", str(questions), "--mode", "all", data_dir=data_dir).stdout
    assert all(mode in table for mode in ("hybrid", "dense", "lexical"))


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    proc = run_cli("ask", QUESTION, data_dir=tmp_path / "empty", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("supportbot: error: no published index")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\nnot json\n')
    proc = run_cli("eval", str(bad), data_dir=tmp_path, check=False)
    assert proc.returncode == 2 and f"{bad}:1" in proc.stderr
    env_proc = subprocess.run(
        [sys.executable, "-m", "bot", "index", "status"],
        capture_output=True,
        text=True,
        env={**os.environ, "SUPPORTBOT_DATA_DIR": str(tmp_path), "SUPPORTBOT_DEVICE": "gpu"},
        timeout=60,
    )
    assert env_proc.returncode == 2 and "SUPPORTBOT_DEVICE" in env_proc.stderr


def test_device_flag_is_validated_and_used(data_dir: Path) -> None:
    out = run_cli("ask", QUESTION, "--json", "--device", "cpu", data_dir=data_dir).stdout
    assert json.loads(out)["sources"]
    bad = run_cli("ask", QUESTION, "--device", "tpu", data_dir=data_dir, check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
