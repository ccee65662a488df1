"""The `supportbot` command end to end on the tiny corpus, as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import os
import re
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


def test_build_skips_and_reports_links_out_of_the_docs_folder(tmp_path: Path) -> None:
    import shutil

    from tests.conftest import MINI_DOCS

    docs = tmp_path / "docs"
    shutil.copytree(MINI_DOCS, docs)
    secret = tmp_path / "secret.md"
    secret.write_text("# Secret\n\nSUPPORTBOT_MATRIX_ACCESS_TOKEN=syt_leaked\n", encoding="utf-8")
    (docs / "guides/md/secret.md").symlink_to(secret)
    out = run_cli("index", "build", "--no-keras", "--docs-dir", str(docs), data_dir=tmp_path / "d")
    assert "6 documents" in out.stdout  # as without the link
    assert (
        "skipped 1 link(s) resolving outside the docs folder (not indexed): guides/md/secret.md"
    ) in " ".join(out.stdout.split())
    answer = run_cli("ask", "SUPPORTBOT_MATRIX_ACCESS_TOKEN", "--json", data_dir=tmp_path / "d")
    assert "syt_leaked" not in answer.stdout


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
    # The curve ends with the threshold the rule picks (or says that none keeps the bars).
    assert "keeps top-1 precision >= 0.90 and unanswerable quiet >= 0.80" in table


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


# --- a new operator's rough edges (issue 12) -----------------------------------------------------
def test_global_options_work_before_and_after_the_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    for args in (
        ["--data-dir", str(data), "index", "status"],  # as the README writes it
        ["index", "status", "--data-dir", str(data)],
        ["-v", "--data-dir", str(data), "db", "status", "--json"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env
        )
        assert "invalid choice" not in proc.stderr, args
        assert str(data) in proc.stdout + proc.stderr, (args, proc.stdout, proc.stderr)
        assert proc.returncode == 1, (args, proc.returncode, proc.stderr)


def test_version_and_mode_help(tmp_path: Path) -> None:
    from importlib.metadata import version

    out = run_cli("--version", data_dir=tmp_path).stdout
    assert out.strip() == f"supportbot {version('keras-supportbot')}"
    for command in ("ask", "eval", "eval-duplicates"):
        text = " ".join(run_cli(command, "--help", data_dir=tmp_path).stdout.split())
        assert "hybrid (dense + BM25 fused" in text, command


def test_device_only_where_a_model_runs(tmp_path: Path) -> None:
    for command in (["index", "build"], ["ask"], ["eval"], ["eval-duplicates"], ["run"]):
        assert "--device" in run_cli(*command, "--help", data_dir=tmp_path).stdout, command
    for command in (["index", "status"], ["db", "status"], ["users", "list"]):
        assert "--device" not in run_cli(*command, "--help", data_dir=tmp_path).stdout, command
        proc = run_cli(*command, "--device", "cpu", data_dir=tmp_path, check=False)
        assert proc.returncode == 2 and "unrecognized arguments: --device" in proc.stderr


def test_index_status_without_an_index_says_so_on_stderr(tmp_path: Path) -> None:
    proc = run_cli("index", "status", data_dir=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("no index published under")


def test_missing_api_package_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Without keras installed (here: a package name that is not installed), the build ends
    in one line naming the fixes, not a PackageNotFoundError traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update(SUPPORTBOT_DATA_DIR=str(tmp_path), SUPPORTBOT_API_PACKAGE="no_such_package_here")
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "index", "build"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("supportbot: error: cannot index the 'no_such_package_here' package")
    assert "--no-keras" in line and "Traceback" not in proc.stderr


@pytest.mark.parametrize("where", ["toml", "dotenv"])
def test_log_format_comes_from_the_settings_file(tmp_path: Path, where: str) -> None:
    """log_format in supportbot.toml or .env is honoured, not only the environment variable."""
    if where == "toml":
        (tmp_path / "supportbot.toml").write_text('log_format = "json"\n', encoding="utf-8")
    else:
        (tmp_path / ".env").write_text("SUPPORTBOT_LOG_FORMAT=json\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env["SUPPORTBOT_DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "-v", "db", "upgrade"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= set(record)


def test_index_build_logs_progress_lines_into_a_pipe(tmp_path: Path) -> None:
    """Output to a file or pipe (systemd, Docker, CI): no progress bar, but log lines with the
    phase, done/total and the rate, so a long build does not look hung."""
    from tests.conftest import MINI_DOCS

    proc = run_cli("index", "build", "--no-keras", "--docs-dir", str(MINI_DOCS), data_dir=tmp_path)
    err = proc.stderr
    assert "\x1b[" not in err and "━" not in err  # no bar drawn into the log
    assert re.search(r"supportbot\.progress: chunk: started, 6 items", err), err
    assert re.search(r"supportbot\.progress: chunk: 6/6 \(100%\), [\d.]+/s, done in", err), err
    assert re.search(r"supportbot\.progress: embed: (\d+)/\1 \(100%\), [\d.]+/s, done in", err)
    quiet = run_cli(
        "index",
        "build",
        "--no-keras",
        "--docs-dir",
        str(MINI_DOCS),
        "--no-progress",
        "--force",
        data_dir=tmp_path,
    )
    assert "supportbot.progress" not in quiet.stderr


def test_readme_command_table_lists_every_command() -> None:
    """eval-duplicates was missing from the README's table: every command (and action) of the
    parser has a row."""
    import argparse

    from bot.cli.parser import build_parser

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `supportbot ")]

    def commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
        found: list[str] = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    nested = commands(sub, f"{prefix} {name}")
                    found.extend(nested or [f"{prefix} {name}"])
        return found

    listed = " ".join(rows)
    for command in commands(build_parser(), "supportbot"):
        *parent, action = command.split()
        assert f"`{command}" in listed or (
            len(parent) > 1 and f"`{parent[-1]} {action}" in listed
        ), f"{command} is not in the README's command table"
