"""Loading the embedding model fails the way an operator can act on: one line, an exit code.

The real `supportbot` command in a subprocess, the real loader: a model folder that is not
there (never was, or was removed after the index was built), a folder that holds no model, and
`--device cuda` on a machine where torch sees no GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MINI_DOCS


def supportbot(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    clean.update({"SUPPORTBOT_DATA_DIR": str(data_dir), "SUPPORTBOT_DEVICE": "cpu", **env})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=300,
    )


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 2 and a single ``supportbot: error:`` line, the last on stderr, naming the
    needles. (Progress lines may come before it: without a terminal, a build logs them.)"""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == lines[-1:], proc.stderr
    [line] = errors
    assert line.startswith("supportbot: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def build(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return supportbot(
        "index", "build", "--no-keras", "--docs-dir", str(MINI_DOCS), data_dir=data_dir, **env
    )


def test_missing_model_folder_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "no-such-model"
    proc = build(tmp_path / "data", SUPPORTBOT_EMBEDDING_MODEL=str(missing))
    assert_one_error_line(proc, str(missing), "not downloaded")
    assert not (tmp_path / "data" / "indexes" / "CURRENT").exists()  # nothing published


def test_folder_without_a_model_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "models" / "empty"
    empty.mkdir(parents=True)
    (empty / "README.txt").write_text("weights go here\n")
    proc = build(tmp_path / "data", SUPPORTBOT_EMBEDDING_MODEL=str(empty))
    assert_one_error_line(proc, "could not load embedding model", str(empty))
    assert not (tmp_path / "data" / "indexes" / "CURRENT").exists()


def test_model_folder_removed_after_the_build_is_one_line(tmp_path: Path) -> None:
    """The index names its model; the folder is gone when the index is served."""
    from bot.retrieval.encoder import resolve_model_path

    folder = tmp_path / "models" / "minilm"
    folder.parent.mkdir()
    folder.symlink_to(resolve_model_path("default"), target_is_directory=True)
    data = tmp_path / "data"
    built = build(data, SUPPORTBOT_EMBEDDING_MODEL=str(folder))
    assert built.returncode == 0, built.stderr
    folder.unlink()

    asked = supportbot("ask", "how do I save a model?", data_dir=data)
    assert_one_error_line(asked, str(folder))
    served = supportbot("run", data_dir=data, SUPPORTBOT_WEB_PORT="0")
    assert_one_error_line(served, str(folder))


def test_cuda_without_a_gpu_is_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    for proc in (
        build(tmp_path / "data", SUPPORTBOT_DEVICE="cuda"),
        supportbot(
            "index",
            "build",
            "--no-keras",
            "--docs-dir",
            str(MINI_DOCS),
            "--device",
            "cuda",
            data_dir=tmp_path / "data",
        ),
    ):
        assert_one_error_line(proc, "cuda", "no CUDA device")
    assert not (tmp_path / "data" / "indexes" / "CURRENT").exists()
