"""API documents link to their keras.io page whenever the site map lists them.

Built the way ``index build`` builds them: the installed keras package, with and without the
export's site map, and with the site map a real keras-io checkout carries
(``scripts/*_master.py``, read without running them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.corpus.documents import Document
from bot.settings import load_settings
from index_builder.collect import collect_documents
from index_builder.sources.site_map import SiteMap, find_site_map, master_dicts_from_scripts
from tests.conftest import SHARED

SITE_MAP = SHARED / "keras-io-docs" / "site_map.json"
needs_site_map = pytest.mark.skipif(
    not SITE_MAP.is_file(), reason="shared keras-io-docs not present"
)
GITHUB = "https://github.com/keras-team/keras/blob/"


def api_documents(tmp_path: Path, **settings: Any) -> list[Document]:
    docs, _ = collect_documents(
        load_settings(data_dir=tmp_path, include_past_answers=False, **settings)
    )
    return [d for d in docs if d.source == "python-api:keras"]


@needs_site_map
def test_every_listed_api_document_links_to_keras_io(tmp_path: Path) -> None:
    site_map = SiteMap.load(SITE_MAP)
    docs = api_documents(tmp_path, site_map=SITE_MAP)
    listed = [d for d in docs if {d.doc_id, *d.aliases} & site_map.symbols]
    assert len(listed) > 500  # the bulk of keras' reference
    for doc in listed:
        name = next(n for n in (doc.doc_id, *doc.aliases) if n in site_map.symbols)
        assert doc.url == site_map.symbol_url(name), doc.doc_id
        assert doc.url.startswith("https://keras.io/api/") and "#" in doc.url
    rest = [d for d in docs if d not in listed]
    assert rest and all(d.url.startswith(GITHUB) for d in rest)

    by_id = {d.doc_id: d for d in docs}
    assert by_id["keras.callbacks.EarlyStopping"].url == (
        "https://keras.io/api/callbacks/early_stopping/#earlystopping-class"
    )
    assert by_id["keras.Model.fit"].url == (
        "https://keras.io/api/models/model_training_apis/#fit-method"
    )
    # Not on keras.io: the source line it is defined at.
    assert by_id["keras.utils.Config.freeze"].url.startswith(GITHUB)


def test_without_a_site_map_api_documents_link_to_source_lines(tmp_path: Path) -> None:
    docs = api_documents(tmp_path)
    assert docs and all(d.url.startswith(GITHUB) and "#L" in d.url for d in docs)


def _split(root: dict[str, Any], names: dict[str, str], out: dict[str, str]) -> str:
    """``root`` as Python source, its children named in ``names`` moved to own modules."""
    children = []
    for child in root.get("children", []):
        name = names.get(child["path"])
        if name:
            out[name] = _split(child, names, out)
        children.append(name or _split(child, names, out))
    fields = [f"{k!r}: {v!r}" for k, v in root.items() if k != "children"]
    if children:
        fields.append(f"'children': [{', '.join(children)}]")
    return "{" + ", ".join(fields) + "}"


@needs_site_map
def test_site_map_from_a_checkouts_master_scripts_matches_the_export(tmp_path: Path) -> None:
    data = json.loads(SITE_MAP.read_text(encoding="utf-8"))
    scripts = tmp_path / "docs" / "scripts"
    scripts.mkdir(parents=True)
    # keras-io keeps the KerasTuner/CV/NLP reference in modules of their own, imported by name.
    nested = {"keras_tuner/": "KT_API_MASTER", "keras_cv/": "CV_API_MASTER"}
    nested["keras_nlp/"] = "NLP_API_MASTER"
    for root in ("API_MASTER", "GUIDES_MASTER", "EXAMPLES_MASTER"):
        modules: dict[str, str] = {}
        source = _split(data[root], nested if root == "API_MASTER" else {}, modules)
        imports = ""
        for name, sub in modules.items():
            (scripts / f"{name.lower()}.py").write_text(f"{name} = {sub}\n", encoding="utf-8")
            imports += f"from {name.lower()} import {name}\n"
        (scripts / f"{root.lower()}.py").write_text(
            f"{imports}\n{root} = {source}\n", encoding="utf-8"
        )
    # The site generator's own code is never run.
    (scripts / "autogen.py").write_text("raise SystemExit('executed')\n")
    (scripts / "broken_master.py").write_text("THIS IS = not python\n")

    found = find_site_map(tmp_path / "docs")
    assert found is not None
    derived, origin = found
    assert origin.endswith("scripts/*_master.py")
    assert derived.pages == SiteMap.from_dict(data).pages
    assert derived.symbol_url("keras_tuner.RandomSearch") == (
        SiteMap.from_dict(data).symbol_url("keras_tuner.RandomSearch")
    )


def test_master_scripts_keep_data_and_skip_code(tmp_path: Path) -> None:
    (tmp_path / "sub_master.py").write_text(
        "SUB_MASTER = {'path': 'sub/', 'title': 'Sub', 'generate': ['pkg.f']}\n"
    )
    (tmp_path / "api_master.py").write_text(
        "import os\n"
        "from sub_master import SUB_MASTER\n"
        "PAGES = [SUB_MASTER, os.getenv('X'), {'path': 'b', 'title': 'B'}]\n"
        "API_MASTER = {'path': 'api/', 'title': 'API', 'children': PAGES}\n"
        "LATER_MASTER = {'path': 'x/', 'title': compute()}\n"
    )
    masters = master_dicts_from_scripts(tmp_path)
    assert set(masters) == {"API_MASTER", "SUB_MASTER"}
    site_map = SiteMap.from_dict(masters)
    assert sorted(site_map.pages) == ["api", "api/b", "api/sub"]
    assert site_map.symbol_url("pkg.f") == "https://keras.io/api/sub/#f-function"


def test_a_docs_folder_without_a_site_map(tmp_path: Path) -> None:
    assert find_site_map(tmp_path) is None
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "autogen.py").write_text("")
    assert find_site_map(tmp_path) is None
