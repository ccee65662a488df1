"""`index build --docs-git URL`: clone into the data dir, pull on re-index, one-line errors.

The "remote" is a real git repository made in a temp dir from a few pages of
``../shared/keras-io-docs`` (a keras-io checkout has ``scripts/*_master.py`` instead of
``site_map.json``; they are written here from the export's site map). Cloned with a
``file://`` URL: real git, no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.errors import BuildError, ConfigError
from bot.retrieval.index import current_version, load_index, read_manifest
from bot.retrieval.search import Retriever
from bot.room.answerer import LiveAnswerer
from bot.settings import Settings, load_settings
from index_builder.build import build_index, rebuild_current
from index_builder.sources.docs_git import checkout_dir, redact_url, sync_docs_checkout
from tests.conftest import SHARED

DOCS = SHARED / "keras-io-docs"
FIRST_PAGES = ("templates/getting_started/ecosystem.md", "templates/about.md")
LATER_PAGE = "guides/md/distributed_training_with_torch.md"

pytestmark = pytest.mark.skipif(
    not (DOCS / "site_map.json").is_file(), reason="shared keras-io-docs not present"
)


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    proc = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def write_master_scripts(site_map: dict[str, Any], scripts: Path) -> None:
    """``scripts/guides_master.py`` as keras-io lays it out: sub-masters imported by name,
    plus code that is not plain data (a call), which the reader skips."""
    scripts.mkdir(parents=True, exist_ok=True)
    guides = site_map["GUIDES_MASTER"]
    nested = {"keras_tuner/": "KT_GUIDES_MASTER", "keras_cv/": "CV_GUIDES_MASTER"}
    children = []
    for child in guides["children"]:
        name = nested.get(child["path"])
        if name:
            (scripts / f"{name.lower()}.py").write_text(f"{name} = {child!r}\n", encoding="utf-8")
        children.append(name or repr(child))
    children.append("make_page('generated_at_build_time')")
    lines = [f"from {n.lower()} import {n}" for n in nested.values()]
    lines += ["", "GUIDES_MASTER = {"]
    lines += [f"    {k!r}: {v!r}," for k, v in guides.items() if k != "children"]
    lines += ["    'children': [", *(f"        {c}," for c in children), "    ],", "}"]
    lines += ["GUIDES_MASTER['children'].sort(key=len)", ""]
    (scripts / "guides_master.py").write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A keras-io-shaped git repository with two pages and the guides' site-map script."""
    repo = tmp_path / "origin"
    for rel in FIRST_PAGES:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DOCS / rel, repo / rel)
    site_map = json.loads((DOCS / "site_map.json").read_text(encoding="utf-8"))
    write_master_scripts(site_map, repo / "scripts")
    (repo / "scripts" / "autogen.py").write_text("raise SystemExit('never run')\n")
    git("init", "-q", "-b", "master", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "two pages", cwd=repo)
    return repo


def add_later_page(repo: Path) -> str:
    (repo / LATER_PAGE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DOCS / LATER_PAGE, repo / LATER_PAGE)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "a guide", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def git_settings(tmp_path: Path, url: str) -> Settings:
    return load_settings(data_dir=tmp_path / "data", docs_git=url, include_keras_api=False)


def test_build_clones_into_the_data_dir_and_pulls_on_the_next_build(
    tmp_path: Path, origin: Path, encoder: Any
) -> None:
    url = origin.as_uri()
    settings = git_settings(tmp_path, url)
    first = build_index(settings, encoder=encoder)
    checkout = checkout_dir(settings.data_dir)
    assert checkout == settings.data_dir / "docs" / "keras-io"
    assert (checkout / ".git").is_dir()
    # Only what the index reads is checked out: not the site generator's code.
    assert not (checkout / "scripts" / "autogen.py").exists()
    assert (checkout / "scripts" / "guides_master.py").is_file()
    manifest = read_manifest(settings.index_root / first.version)
    assert manifest["build_inputs"]["docs_git"] == url
    assert manifest["build_inputs"]["docs_dir"] == str(checkout)
    assert manifest["sources"]["keras-io"]["version"] == git("rev-parse", "HEAD", cwd=origin)
    # The site map came from scripts/*_master.py, so page titles are the site's.
    assert manifest["sources"]["site-map"]["version"].endswith("scripts/*_master.py")
    index = load_index(settings.index_root)
    assert {d.doc_id for d in index.docs} == {"getting_started/ecosystem", "about"}

    head = add_later_page(origin)
    second = build_index(settings, encoder=encoder)
    assert second.published
    assert second.sources["keras-io"]["version"] == head
    docs = {d.doc_id: d for d in load_index(settings.index_root).docs}
    guide = docs["guides/distributed_training_with_torch"]
    assert guide.url == "https://keras.io/guides/distributed_training_with_torch/"
    assert guide.title == "Distributed training with PyTorch"  # from the derived site map


def test_quick_republish_keeps_the_checkout_and_the_nightly_one_pulls(
    tmp_path: Path, origin: Path, encoder: Any
) -> None:
    built = git_settings(tmp_path, origin.as_uri())
    build_index(built, encoder=encoder)
    head = add_later_page(origin)
    # The running bot was started without SUPPORTBOT_DOCS_GIT: the manifest remembers it.
    running = load_settings(data_dir=built.data_dir, include_keras_api=False)
    answerer = LiveAnswerer(running, Retriever(load_index(running.index_root), encoder))

    assert answerer.republish() is None  # past answers only: the docs stay as they were
    assert answerer.scheduled_rebuild() is not None  # the nightly job pulls first
    index = answerer.retriever.index
    assert "guides/distributed_training_with_torch" in {d.doc_id for d in index.docs}
    assert index.manifest["sources"]["keras-io"]["version"] == head
    assert index.manifest["build_inputs"]["docs_git"] == origin.as_uri()


def test_a_missing_checkout_is_cloned_again_by_a_rebuild(
    tmp_path: Path, origin: Path, encoder: Any
) -> None:
    settings = git_settings(tmp_path, origin.as_uri())
    first = build_index(settings, encoder=encoder)
    shutil.rmtree(checkout_dir(settings.data_dir))
    again = rebuild_current(load_settings(data_dir=settings.data_dir, include_keras_api=False))
    assert not again.published and again.version == first.version  # same corpus, same version
    assert (checkout_dir(settings.data_dir) / "templates" / "about.md").is_file()


def test_a_rewritten_remote_fails_in_one_line_and_keeps_the_index(
    tmp_path: Path, origin: Path, encoder: Any
) -> None:
    settings = git_settings(tmp_path, origin.as_uri())
    first = build_index(settings, encoder=encoder)
    # History rewritten upstream: a fast-forward is impossible, so nothing is merged.
    (origin / "templates" / "about.md").write_text("# About\n\nRewritten.\n", encoding="utf-8")
    git("add", "-A", cwd=origin)
    git("commit", "-q", "--amend", "-m", "rewritten", cwd=origin)
    with pytest.raises(BuildError) as err:
        build_index(settings, encoder=encoder)
    message = str(err.value)
    assert message.startswith("git pull of ") and "\n" not in message
    assert current_version(settings.index_root) == first.version


def test_existing_folder_that_is_not_the_checkout(tmp_path: Path, origin: Path) -> None:
    data = tmp_path / "data"
    checkout_dir(data).mkdir(parents=True)
    with pytest.raises(BuildError, match="not a git checkout"):
        sync_docs_checkout(origin.as_uri(), data)

    other = tmp_path / "other"
    shutil.copytree(origin, other)
    data2 = tmp_path / "data2"
    sync_docs_checkout(origin.as_uri(), data2)
    with pytest.raises(BuildError, match="is a checkout of"):
        sync_docs_checkout(other.as_uri(), data2)


def test_docs_dir_and_docs_git_together_is_a_config_error(tmp_path: Path, origin: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        docs_git=origin.as_uri(),
        docs_dir=origin,
        include_keras_api=False,
    )
    with pytest.raises(ConfigError, match="not both"):
        build_index(settings)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://alice:s3cr3t-token@github.com/keras-team/keras-io.git", "***@github.com"),
        ("https://ghp_abcdefgh12345678@github.com/keras-team/keras-io", "***@github.com"),
        ("https://github.com/keras-team/keras-io", "https://github.com/keras-team/keras-io"),
        ("git@github.com:keras-team/keras-io.git", "git@github.com:keras-team/keras-io.git"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    redacted = redact_url(url)
    assert shown in redacted
    assert "s3cr3t" not in redacted and "ghp_" not in redacted


def test_cli_clone_failure_is_one_line_without_credentials(tmp_path: Path) -> None:
    # Port 9 on this host: nothing listens, so git fails at once, with the URL in its error.
    url = "http://alice:s3cr3t-token@127.0.0.1:9/keras-io.git"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update({"SUPPORTBOT_DATA_DIR": str(tmp_path / "data"), "SUPPORTBOT_DEVICE": "cpu"})
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "index", "build", "-v", "--no-keras", "--docs-git", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "s3cr3t" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("supportbot: error: git clone http://***@127.0.0.1:9/keras-io.git")
    assert list((tmp_path / "data" / "docs").glob("*")) == []  # no half-made checkout left


def test_cli_flag_beats_the_other_source_from_the_environment(tmp_path: Path, origin: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update(
        {
            "SUPPORTBOT_DATA_DIR": str(tmp_path / "data"),
            "SUPPORTBOT_DEVICE": "cpu",
            "SUPPORTBOT_DOCS_DIR": str(tmp_path / "nowhere"),
        }
    )
    command = [sys.executable, "-m", "bot", "index", "build", "--no-keras", "--no-progress"]
    proc = subprocess.run(
        [*command, "--docs-git", origin.as_uri()],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "source keras-io @ " + git("rev-parse", "HEAD", cwd=origin) in proc.stdout
