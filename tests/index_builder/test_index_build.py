"""Index builds on a tiny corpus with the real model: publish, cache, no-op rebuild, crashes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.retrieval.index import current_version, load_index
from bot.retrieval.search import Retriever
from bot.settings import Settings, load_settings
from index_builder.build import build_index
from index_builder.publish import STAGING_PREFIX


def _settings(data_dir: Path, docs: Path) -> Settings:
    return load_settings(data_dir=data_dir, docs_dir=docs, include_keras_api=False)


def _copy_docs(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_build_publishes_and_serves(tmp_path: Path, mini_docs: Path, encoder: object) -> None:
    settings = _settings(tmp_path / "data", mini_docs)
    report = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    assert report.published
    assert report.documents == 5 + 1  # five pages + one site-map symbol stub (EarlyStopping)
    assert report.embedded == report.chunks > 0

    index = load_index(settings.index_root)
    assert index.version == report.version == current_version(settings.index_root)
    manifest = index.manifest
    assert manifest["model"] == "all-MiniLM-L6-v2" and manifest["dim"] == 384
    assert manifest["documents"] == report.documents and manifest["chunks"] == report.chunks
    assert set(manifest["sources"]) == {"keras-io", "site-map"}
    assert manifest["dense_index"] == "flat-ip"

    result = Retriever(index, encoder).search(  # type: ignore[arg-type]
        "How can I stop training when validation loss stops improving?"
    )
    assert result.hits[0].doc_id == "guides/training_loops"
    assert result.hits[0].url == "https://keras.io/guides/training_loops/"


def test_unchanged_rebuild_embeds_nothing_and_keeps_version(
    tmp_path: Path, mini_docs: Path, encoder: object
) -> None:
    settings = _settings(tmp_path / "data", mini_docs)
    first = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    again = build_index(settings, encoder=None)  # would fail loudly if it tried to embed
    assert not again.published and again.embedded == 0
    assert again.version == first.version == current_version(settings.index_root)

    forced = build_index(settings, encoder=encoder, force=True)  # type: ignore[arg-type]
    assert forced.published and forced.version != first.version
    assert forced.embedded == 0 and forced.cached == forced.chunks


def test_changed_page_reembeds_only_its_chunks(
    tmp_path: Path, mini_docs: Path, encoder: object
) -> None:
    docs = _copy_docs(mini_docs, tmp_path / "docs")
    settings = _settings(tmp_path / "data", docs)
    first = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    page = docs / "guides" / "md" / "saving_models.md"
    page.write_text(page.read_text() + "\n## Weights only\n\nUse `save_weights` for weights.\n")
    second = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    assert second.published and second.version != first.version
    assert 0 < second.embedded <= 2
    assert second.chunks == first.chunks + 1


def test_approximate_index_above_threshold(
    tmp_path: Path, mini_docs: Path, encoder: object
) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        docs_dir=mini_docs,
        include_keras_api=False,
        approximate_index_above=1,
    )
    build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    index = load_index(settings.index_root)
    assert index.manifest["dense_index"] == "hnsw32"
    hits = Retriever(index, encoder).search("save a model to one file").hits  # type: ignore[arg-type]
    assert hits[0].doc_id == "guides/saving_models"


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import index_builder.publish as publish
    from bot.settings import load_settings
    from index_builder.build import build_index

    stage = sys.argv[3]
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    # Die half-way: after the staging folder has its dense index, or after the new version
    # folder is complete but before CURRENT moves.
    if stage == "lexical":
        publish.build_lexical_index = die
    else:
        import index_builder.build as build
        build.set_current = die
    settings = load_settings(data_dir=Path(sys.argv[1]), docs_dir=Path(sys.argv[2]),
                             include_keras_api=False, device="cpu")
    build_index(settings)
    """
)


@pytest.mark.parametrize("stage", ["lexical", "pointer"])
def test_build_killed_halfway_leaves_old_index_serving(
    tmp_path: Path, mini_docs: Path, encoder: object, stage: str
) -> None:
    docs = _copy_docs(mini_docs, tmp_path / "docs")
    data = tmp_path / "data"
    settings = _settings(data, docs)
    old = build_index(settings, encoder=encoder)  # type: ignore[arg-type]

    (docs / "guides" / "md" / "new_page.md").write_text("# Mixed precision\n\nUse float16.\n")
    script = tmp_path / "kill_build.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(data), str(docs), stage],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    # The old version still serves, complete.
    assert current_version(settings.index_root) == old.version
    index = load_index(settings.index_root)
    assert "guides/new_page" not in index.doc_rows
    assert Retriever(index, encoder).search("save a model").hits  # type: ignore[arg-type]
    leftovers = [p.name for p in settings.index_root.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert (stage == "lexical") == bool(leftovers)

    # The next build recovers: cleans up and publishes the new corpus.
    new = build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    assert new.published and current_version(settings.index_root) == new.version
    assert "guides/new_page" in load_index(settings.index_root).doc_rows
    assert not [p for p in settings.index_root.iterdir() if p.name.startswith(STAGING_PREFIX)]
    manifest = json.loads((settings.index_root / new.version / "manifest.json").read_text())
    assert manifest["documents"] == old.documents + 1


def test_old_versions_are_pruned(tmp_path: Path, mini_docs: Path, encoder: object) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        docs_dir=mini_docs,
        include_keras_api=False,
        keep_index_versions=2,
    )
    versions = [
        build_index(settings, encoder=encoder, force=True).version  # type: ignore[arg-type]
        for _ in range(3)
    ]
    on_disk = sorted(p.name for p in settings.index_root.iterdir() if p.is_dir())
    assert on_disk == sorted(versions[1:])
