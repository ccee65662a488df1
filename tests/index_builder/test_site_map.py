"""Tests for index_builder.sources.site_map: paths, breadcrumbs, symbols and anchors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from index_builder.sources.site_map import SiteMap, SitePage, symbol_anchor

REAL_SITE_MAP = Path(__file__).parents[3] / "shared" / "keras-io-docs" / "site_map.json"


def _tree() -> dict[str, Any]:
    callbacks = {
        "path": "callbacks/",
        "title": "Callbacks API",
        "toc": True,
        "children": [
            {
                "path": "early_stopping",
                "title": "EarlyStopping",
                "generate": ["keras.callbacks.EarlyStopping"],
            },
            {
                "path": "base_callback",
                "title": "Base Callback class",
                "generate": ["keras.callbacks.Callback"],
            },
        ],
    }
    tuner = {
        "path": "keras_tuner/",
        "title": "KerasTuner",
        "children": [
            {
                "path": "hyperparameters",
                "title": "HyperParameters",
                "generate": ["keras_tuner.HyperParameters", "keras_tuner.HyperParameters.Int"],
            }
        ],
    }
    return {
        "API_MASTER": {
            "path": "api/",
            "title": "Keras 3 API documentation",
            "children": [
                {
                    "path": "models/",
                    "title": "Models API",
                    "children": [
                        {
                            "path": "model_training_apis",
                            "title": "Model training APIs",
                            "generate": ["keras.Model.compile", "keras.Model.fit"],
                        },
                        {
                            "path": "model_config",
                            "title": "Model config",
                            "generate": ["keras.Model.get_config"],
                        },
                    ],
                },
                callbacks,
                {
                    "path": "ops/",
                    "title": "Ops API",
                    "children": [
                        {
                            "path": "numpy/",  # trailing slash without children, as in the real map
                            "title": "NumPy ops",
                            "generate": ["keras.ops.add", "keras.ops.image.resize"],
                        },
                    ],
                },
                {
                    "path": "layers/",
                    "title": "Layers API",
                    "children": [
                        {
                            "path": "base_layer",
                            "title": "The base Layer class",
                            "generate": ["keras.layers.Layer", "keras.Model.get_config"],
                        },
                        # Listed twice in the real map too: one page, symbols merged.
                        {
                            "path": "dense",
                            "title": "Dense layer",
                            "generate": ["keras.layers.Dense"],
                        },
                        {
                            "path": "dense",
                            "title": "Dense layer (dup)",
                            "generate": ["keras.layers.Dense", "keras.layers.EinsumDense"],
                        },
                    ],
                },
                tuner,
            ],
        },
        # Already nested above; must not become a root page "keras_tuner/...".
        "KT_API_MASTER": tuner,
        "GUIDES_MASTER": {
            "path": "guides/",
            "title": "Developer guides",
            "children": [
                {"path": "transfer_learning", "title": "Transfer learning & fine-tuning"},
                {
                    "path": "keras_tuner/",
                    "title": "Hyperparameter Tuning",
                    "children": [{"path": "getting_started", "title": "Getting started"}],
                },
            ],
        },
        "EXAMPLES_MASTER": {
            "path": "examples/",
            "title": "Code examples",
            "children": [
                {
                    "path": "vision/",
                    "title": "Computer Vision",
                    "children": [{"path": "mnist_convnet", "title": "Simple MNIST convnet"}],
                }
            ],
        },
    }


@pytest.fixture()
def site_map() -> SiteMap:
    return SiteMap.from_dict(_tree())


def test_page_paths_are_concatenated_fragments(site_map: SiteMap) -> None:
    assert "api/callbacks/early_stopping" in site_map.pages
    assert "api/ops/numpy" in site_map.pages
    assert "guides/keras_tuner/getting_started" in site_map.pages
    assert "examples/vision/mnist_convnet" in site_map.pages
    assert "api" in site_map.pages and "guides" in site_map.pages
    # Nested masters are not walked as roots.
    assert "keras_tuner/hyperparameters" not in site_map.pages
    assert all(not p.startswith("/") and not p.endswith("/") for p in site_map.pages)


def test_page_fields(site_map: SiteMap) -> None:
    page = site_map.pages["api/callbacks/early_stopping"]
    assert page == SitePage(
        path="api/callbacks/early_stopping",
        title="EarlyStopping",
        breadcrumb=("Keras 3 API documentation", "Callbacks API"),
        symbols=("keras.callbacks.EarlyStopping",),
        children=(),
    )
    callbacks = site_map.pages["api/callbacks"]
    assert callbacks.children == ("api/callbacks/early_stopping", "api/callbacks/base_callback")
    assert callbacks.symbols == ()
    assert site_map.pages["api"].breadcrumb == ()


def test_duplicate_nodes_merge(site_map: SiteMap) -> None:
    dense = site_map.pages["api/layers/dense"]
    assert dense.title == "Dense layer"
    assert dense.symbols == ("keras.layers.Dense", "keras.layers.EinsumDense")
    assert site_map.pages["api/layers"].children.count("api/layers/dense") == 1


def test_page_for_symbol_and_symbols(site_map: SiteMap) -> None:
    page = site_map.page_for_symbol("keras.Model.fit")
    assert page is not None and page.path == "api/models/model_training_apis"
    # Listed on two pages: the first in site order wins.
    first = site_map.page_for_symbol("keras.Model.get_config")
    assert first is not None and first.path == "api/models/model_config"
    assert site_map.page_for_symbol("keras.NoSuchThing") is None
    assert "keras.callbacks.EarlyStopping" in site_map.symbols
    assert isinstance(site_map.symbols, frozenset)
    assert len(site_map.symbols) == 12


@pytest.mark.parametrize(
    ("symbol", "url"),
    [
        (
            "keras.callbacks.EarlyStopping",
            "https://keras.io/api/callbacks/early_stopping/#earlystopping-class",
        ),
        ("keras.Model.fit", "https://keras.io/api/models/model_training_apis/#fit-method"),
        ("keras.ops.add", "https://keras.io/api/ops/numpy/#add-function"),
        ("keras.ops.image.resize", "https://keras.io/api/ops/numpy/#resize-function"),
        (
            "keras_tuner.HyperParameters.Int",
            "https://keras.io/api/keras_tuner/hyperparameters/#int-method",
        ),
        ("keras.NoSuchThing", None),
    ],
)
def test_symbol_url(site_map: SiteMap, symbol: str, url: str | None) -> None:
    assert site_map.symbol_url(symbol) == url


def test_symbol_anchor_strips_non_alphanumerics() -> None:
    assert symbol_anchor("keras.saving.save_model") == "savemodel-function"
    assert symbol_anchor("keras.layers.Conv2D") == "conv2d-class"
    assert symbol_anchor("keras.Model.get_layer") == "getlayer-method"


def test_url_for_path(site_map: SiteMap) -> None:
    assert site_map.url_for_path("guides/transfer_learning") == (
        "https://keras.io/guides/transfer_learning/"
    )
    assert site_map.url_for_path("/api/callbacks/") == "https://keras.io/api/callbacks/"


def test_subtree_symbols(site_map: SiteMap) -> None:
    assert site_map.subtree_symbols("api/callbacks") == (
        "keras.callbacks.EarlyStopping",
        "keras.callbacks.Callback",
    )
    assert site_map.subtree_symbols("guides") == ()
    assert site_map.subtree_symbols("nope") == ()


def test_single_root_node_is_accepted() -> None:
    sm = SiteMap.from_dict(_tree()["GUIDES_MASTER"])
    assert set(sm.pages) == {
        "guides",
        "guides/transfer_learning",
        "guides/keras_tuner",
        "guides/keras_tuner/getting_started",
    }


def test_load_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "site_map.json"
    path.write_text(json.dumps(_tree()), encoding="utf-8")
    assert SiteMap.load(path).pages == SiteMap.from_dict(_tree()).pages


def test_load_rejects_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "site_map.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        SiteMap.load(path)


def test_load_rejects_non_object(tmp_path: Path) -> None:
    path = tmp_path / "site_map.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="JSON object"):
        SiteMap.load(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"SOMETHING": {}}, "root keys"),
        ({"API_MASTER": {"path": "api/"}}, "'title'"),
        ({"API_MASTER": {"path": 3, "title": "x"}}, "'path'"),
        ({"API_MASTER": {"path": "api/", "title": "A", "children": {}}}, "'children'"),
        ({"API_MASTER": {"path": "api/", "title": "A", "children": ["x"]}}, "object"),
        ({"API_MASTER": {"path": "a", "title": "A", "generate": [1]}}, "'generate'"),
    ],
)
def test_from_dict_rejects_bad_shape(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SiteMap.from_dict(data)


def test_bad_shape_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site_map.json"
    path.write_text(json.dumps({"API_MASTER": {"path": "api/"}}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"site_map\.json"):
        SiteMap.load(path)


@pytest.mark.skipif(not REAL_SITE_MAP.is_file(), reason="shared keras-io-docs not present")
def test_real_site_map() -> None:
    sm = SiteMap.load(REAL_SITE_MAP)
    assert sm.symbol_url("keras.Model.fit") == (
        "https://keras.io/api/models/model_training_apis/#fit-method"
    )
    assert sm.symbol_url("keras.callbacks.EarlyStopping") == (
        "https://keras.io/api/callbacks/early_stopping/#earlystopping-class"
    )
    assert "keras.callbacks.EarlyStopping" in sm.subtree_symbols("api/callbacks")
    assert "keras_nlp.models.BertClassifier" in sm.symbols
