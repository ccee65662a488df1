"""Tests for the AST-based API source: a fake keras-like package, then the installed keras."""

from __future__ import annotations

import logging
import sys
import textwrap
import time
from pathlib import Path

import pytest

from index_builder.sources.python_api import (
    ApiSymbol,
    docstring_to_markdown,
    find_package_dir,
    iter_api_documents,
    package_version,
    scan_package,
)

FAKE_FILES: dict[str, str] = {
    # Executing the package would blow up: the scanner must only read it.
    "__init__.py": 'raise RuntimeError("fakepkg must not be imported")\n',
    "src/__init__.py": "",
    "src/api_export.py": """
        class keras_export:
            def __init__(self, path):
                self.path = path

            def __call__(self, symbol):
                return symbol
    """,
    "src/base.py": '''
        class Base:
            """Not exported."""

            def describe(self, verbose=False):
                """Describe the object."""

            def helper(self):
                pass

            def _private(self):
                """Private, never listed."""

            @property
            def size(self):
                """Number of things."""
                return 1

            @property
            def hidden(self):
                return 2

            def get_config(self):
                """Base config."""
    ''',
    "src/layers/__init__.py": "from fakepkg.src.layers.layer import Layer\n",
    "src/layers/layer.py": '''
        from fakepkg.src.api_export import keras_export
        from fakepkg.src.base import Base


        @keras_export(["fake.Layer", "fake.layers.Layer"])
        class Layer(Base):
            """The base layer."""

            def __init__(self, trainable=True, **kwargs):
                pass

            def add_weight(self, shape, initializer="zeros", *, name=None):
                """Add a weight variable."""

            def call(self, inputs):
                """Layer logic."""

            def no_doc(self):
                pass
    ''',
    "src/layers/flatten.py": '''
        from fakepkg.src import api_export
        from fakepkg.src.layers import Layer


        @api_export.keras_export("fake.layers.Flatten")
        class Flatten(Layer):
            """Flattens."""

            def call(self, inputs):
                return inputs


        @api_export.keras_export("fake.layers.Identity")
        class Identity(Layer):
            pass
    ''',
    "src/layers/dense.py": r'''
        from fakepkg.src import api_export
        from fakepkg.src.api_export import keras_export
        from fakepkg.src.mixins import Mixin as RenamedMixin
        from . import layer as layer_module

        PATTERN = "\d+"  # an invalid escape: parsing must not warn

        if BACKEND == "one":
            from fakepkg.src.backend.one import OneTrainer as Trainer
        else:
            from fakepkg.src.backend.two import TwoTrainer as Trainer


        @api_export.keras_export(["fake.layers.Dense", "fake.layers.core.Dense"])
        class Dense(Trainer, RenamedMixin, layer_module.Layer):
            """Dense layer."""

            def __init__(self, units, activation=None, /, use_bias=True, *args, kernel=None, **kw):
                pass

            def call(self, inputs):
                return inputs

            def get_config(self):
                return {}

            def describe(self, verbose=False):
                pass

            @keras_export("fake.layers.dense_helper")
            @staticmethod
            def helper(x, y=2):
                """A static helper exported on its own."""

            @classmethod
            def from_units(cls, units):
                """Build from a unit count."""
    ''',
    "src/mixins.py": '''
        from typing import overload


        class Mixin:
            def mix(self, a, b=None):
                """Mix a and b."""

            @overload
            def over(self, x: int) -> int: ...
            def over(self, x):
                """Overloaded."""
    ''',
    "src/backend/__init__.py": "",
    "src/backend/one.py": """
        from fakepkg.src.trainers import trainer as base_trainer


        class OneTrainer(base_trainer.Trainer):
            def fit(self, x=None, epochs=1, **kwargs):
                pass
    """,
    "src/backend/two.py": '''
        class TwoTrainer:
            def fit(self):
                """The wrong trainer: the first import alternative must win."""

            def two_only(self):
                """Only on the second trainer."""
    ''',
    "src/trainers/__init__.py": "",
    "src/trainers/trainer.py": '''
        class Trainer:
            def fit(self, x=None, epochs=1):
                """Train the model.

                Args:
                    epochs: Number of epochs.
                """

            def evaluate(self, x=None):
                """Evaluate the model."""

            def undocumented(self):
                pass
    ''',
    "src/ops.py": '''
        import numpy as np

        from fakepkg.src.api_export import keras_export


        @keras_export(["fake.ops.sum", "fake.ops.numpy.sum"])
        def sum(x, axis=None, keepdims=False):
            """Sum of a tensor.

            Args:
                x: Input tensor.

            Returns:
                A tensor.

            Example:

            >>> sum([1, 2])
            3
            """


        def mean(x, *, axis=None):
            """Mean of a tensor."""


        keras_export("fake.ops.mean")(mean)


        def _max(x):
            """Max of a tensor."""


        maximum = keras_export(("fake.ops.max", "fake.ops.maximum"))(_max)
        CONSTANT = 3
        keras_export("fake.ops.CONSTANT")(CONSTANT)
        keras_export("fake.ops.identity")(lambda x: x)


        @keras_export("fake.Plain")
        class Plain:
            pass


        @keras_export("fake.External")
        class External(np.ndarray):
            pass


        @keras_export(["fake._legacy.thing", "fake.utils.thing"])
        def thing():
            pass


        @keras_export("fake._legacy.old")
        def old():
            pass
    ''',
    "src/cycle_a.py": """
        from fakepkg.src.api_export import keras_export
        from fakepkg.src.cycle_b import Q


        class P(Q):
            def p(self):
                '''From P.'''


        @keras_export("fake.Cyclic")
        class Cyclic(P):
            pass
    """,
    "src/cycle_b.py": """
        from fakepkg.src.cycle_a import P


        class Q(P):
            '''Docs of Q.'''

            def q(self):
                '''From Q.'''
    """,
    "src/broken.py": """
        from fakepkg.src.api_export import keras_export

        @keras_export("fake.broken")
        def broken(:
    """,
    "src/ops_test.py": """
        from fakepkg.src.api_export import keras_export

        @keras_export("fake.ops.test_only")
        def t():
            pass
    """,
    "src/test_utils.py": """
        from fakepkg.src.api_export import keras_export

        @keras_export("fake.testing.util")
        def u():
            pass
    """,
    "src/tests/helpers.py": """
        from fakepkg.src.api_export import keras_export

        @keras_export("fake.testing.helper")
        def h():
            pass
    """,
}

EXPECTED_IDS = [
    "fake.Cyclic",
    "fake.Cyclic.p",
    "fake.Cyclic.q",
    "fake.External",
    "fake.Layer",
    "fake.Layer.add_weight",
    "fake.Layer.call",
    "fake.Layer.describe",
    "fake.Layer.get_config",
    "fake.Layer.size",
    "fake.Plain",
    "fake.layers.Dense",
    "fake.layers.Dense.evaluate",
    "fake.layers.Dense.fit",
    "fake.layers.Dense.from_units",
    "fake.layers.Dense.mix",
    "fake.layers.Dense.over",
    "fake.layers.Flatten",
    "fake.layers.Identity",
    "fake.layers.dense_helper",
    "fake.ops.max",
    "fake.ops.mean",
    "fake.ops.sum",
    "fake.utils.thing",
]


def write_fake_package(root: Path) -> Path:
    package = root / "fakepkg"
    for rel, text in FAKE_FILES.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return package


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_package(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def symbols(fake_dir: Path) -> dict[str, ApiSymbol]:
    return {s.name: s for s in scan_package(fake_dir)}


def test_exact_doc_ids(symbols: dict[str, ApiSymbol]) -> None:
    assert list(symbols) == EXPECTED_IDS


def test_kinds_aliases_and_sources(symbols: dict[str, ApiSymbol]) -> None:
    layer = symbols["fake.Layer"]
    assert (layer.kind, layer.aliases, layer.docstring) == (
        "class",
        ("fake.layers.Layer",),
        "The base layer.",
    )
    assert (layer.source_file, layer.lineno) == ("fakepkg/src/layers/layer.py", 6)
    assert symbols["fake.Layer.add_weight"].aliases == ("fake.layers.Layer.add_weight",)
    assert symbols["fake.layers.Dense.fit"].aliases == ("fake.layers.core.Dense.fit",)
    assert symbols["fake.ops.sum"].aliases == ("fake.ops.numpy.sum",)
    assert symbols["fake.ops.max"].aliases == ("fake.ops.maximum",)
    assert symbols["fake.ops.max"].docstring == "Max of a tensor."
    assert symbols["fake.ops.mean"].kind == "function"
    assert symbols["fake.layers.dense_helper"].kind == "method"
    assert symbols["fake.Layer.size"].kind == "method"
    # An undocumented class borrows the docstring of a non-exported base, not of an exported one.
    assert symbols["fake.Cyclic"].docstring == "Docs of Q."
    assert symbols["fake.layers.Identity"].docstring == ""
    # A private export path never becomes a canonical name or an alias.
    assert symbols["fake.utils.thing"].aliases == ()


def test_inherited_docstrings_follow_the_first_import_alternative(
    symbols: dict[str, ApiSymbol],
) -> None:
    fit = symbols["fake.layers.Dense.fit"]
    # OneTrainer.fit (no docstring) applies; its docstring comes from the base Trainer.
    assert fit.signature == "fake.layers.Dense.fit(x=None, epochs=1, **kwargs)"
    assert fit.docstring == "Train the model.\n\nArgs:\n    epochs: Number of epochs."
    assert fit.source_file == "fakepkg/src/trainers/trainer.py"
    assert "two_only" not in {n.rsplit(".", 1)[1] for n in symbols}
    assert symbols["fake.layers.Dense.mix"].signature == "fake.layers.Dense.mix(a, b=None)"
    assert symbols["fake.layers.Dense.over"].signature == "fake.layers.Dense.over(x)"


def test_excluded_methods(symbols: dict[str, ApiSymbol]) -> None:
    for name in [
        "fake.layers.Dense.add_weight",  # only on the exported base
        "fake.layers.Dense.call",  # undocumented, overrides only an exported base's method
        "fake.layers.Dense.get_config",
        "fake.layers.Dense.describe",  # overrides Base.describe, which is reached via Layer only
        "fake.layers.Dense.helper",  # exported on its own
        "fake.layers.Dense.undocumented",
        "fake.layers.Flatten.call",
        "fake.Layer.no_doc",
        "fake.Layer.helper",
        "fake.Layer.hidden",  # undocumented property
        "fake.Layer._private",
        "fake.ops.CONSTANT",
        "fake.ops.identity",
        "fake.broken",
        "fake.ops.test_only",
        "fake.testing.util",
        "fake.testing.helper",
    ]:
        assert name not in symbols


def test_signatures(symbols: dict[str, ApiSymbol]) -> None:
    expected = {
        "fake.layers.Dense": (
            "fake.layers.Dense(units, activation=None, /, use_bias=True, *args, kernel=None, **kw)"
        ),
        "fake.Layer": "fake.Layer(trainable=True, **kwargs)",
        "fake.layers.Flatten": "fake.layers.Flatten(trainable=True, **kwargs)",
        "fake.Layer.add_weight": "fake.Layer.add_weight(shape, initializer='zeros', *, name=None)",
        "fake.Layer.size": "fake.Layer.size",
        "fake.layers.dense_helper": "fake.layers.dense_helper(x, y=2)",
        "fake.layers.Dense.from_units": "fake.layers.Dense.from_units(units)",
        "fake.ops.sum": "fake.ops.sum(x, axis=None, keepdims=False)",
        "fake.ops.mean": "fake.ops.mean(x, *, axis=None)",
        "fake.Plain": "fake.Plain()",
        "fake.External": "fake.External(...)",
        "fake.Cyclic": "fake.Cyclic()",
    }
    assert {name: symbols[name].signature for name in expected} == expected


def test_preferred_names_pick_the_canonical_name(fake_dir: Path) -> None:
    preferred = {"fake.layers.Layer", "fake.ops.numpy.sum", "fake.layers.core.Dense.fit"}
    found = {s.name: s for s in scan_package(fake_dir, preferred_names=preferred)}
    assert found["fake.layers.Layer"].aliases == ("fake.Layer",)
    assert found["fake.layers.Layer.add_weight"].aliases == ("fake.Layer.add_weight",)
    assert "fake.Layer" not in found
    assert found["fake.ops.numpy.sum"].aliases == ("fake.ops.sum",)
    assert found["fake.layers.core.Dense.fit"].aliases == ("fake.layers.Dense.fit",)
    assert found["fake.layers.Dense.evaluate"].aliases == ("fake.layers.core.Dense.evaluate",)


def test_broken_file_is_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    package = write_fake_package(tmp_path)
    with caplog.at_level(logging.WARNING, logger="index_builder.sources.python_api"):
        names = [s.name for s in scan_package(package)]
    assert names == EXPECTED_IDS
    assert any("broken.py" in r.getMessage() for r in caplog.records)


def test_other_export_decorators(fake_dir: Path) -> None:
    assert scan_package(fake_dir, export_decorators=("tf_export",)) == []


def test_documents(fake_dir: Path) -> None:
    def url_for(symbol: ApiSymbol) -> str | None:
        return "https://fake.io/api/ops/sum/" if symbol.name == "fake.ops.sum" else None

    docs = list(iter_api_documents("fakepkg", package_dir=fake_dir, url_for=url_for))
    assert [d.doc_id for d in docs] == EXPECTED_IDS
    by_id = {d.doc_id: d for d in docs}
    total = by_id["fake.ops.sum"]
    assert (total.title, total.kind, total.url) == (
        "fake.ops.sum",
        "api",
        "https://fake.io/api/ops/sum/",
    )
    assert (total.source, total.source_version) == ("python-api:fakepkg", "unknown")
    assert total.aliases == ("fake.ops.numpy.sum",)
    assert total.symbols == ("fake.ops.sum", "fake.ops.numpy.sum")
    assert total.text == (
        "# fake.ops.sum\n\n```python\nfake.ops.sum(x, axis=None, keepdims=False)\n```\n\n"
        "Sum of a tensor.\n\n## Args\n    x: Input tensor.\n\n## Returns\n    A tensor.\n\n"
        "## Example\n\n```python\n>>> sum([1, 2])\n3\n```\n"
    )
    assert by_id["fake.Plain"].text == "# fake.Plain\n\n```python\nfake.Plain()\n```\n"
    assert by_id["fake.Plain"].url == "https://pypi.org/project/fakepkg/"


def test_docstring_to_markdown_leaves_code_and_prose_alone() -> None:
    doc = textwrap.dedent(
        """\
        Intro line ending with a colon, but a sentence:
        Example:
        ```python
        Args:
        >>> not_a_doctest()
        ```
            >>> x = 1
            ... y = 2
            >>> x + y
            3
        Usage in a Keras model:
            Indented:
        """
    )
    assert docstring_to_markdown(doc) == textwrap.dedent(
        """\
        Intro line ending with a colon, but a sentence:
        ## Example
        ```python
        Args:
        >>> not_a_doctest()
        ```
        ```python
        >>> x = 1
        ... y = 2
        >>> x + y
        3
        ```
        ## Usage in a Keras model
            Indented:"""
    )


def test_find_package_dir_does_not_import(fake_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(fake_dir.parent))
    assert find_package_dir("fakepkg") == fake_dir
    assert find_package_dir("fakepkg.src.layers") == fake_dir / "src" / "layers"
    assert "fakepkg" not in sys.modules
    with pytest.raises(LookupError):
        find_package_dir("no_such_package_for_supportbot_tests")
    with pytest.raises(LookupError):
        find_package_dir("fakepkg.src.nothing_here")
    with pytest.raises(LookupError):
        find_package_dir("textwrap")  # a module, not a package


def test_package_version() -> None:
    assert package_version("pytest") == pytest.__version__
    assert package_version("no-such-package-for-supportbot-tests") == "unknown"


def test_installed_keras() -> None:
    try:
        keras_dir = find_package_dir("keras")
    except LookupError:
        pytest.skip("keras is not installed")
    start = time.perf_counter()
    docs = {d.doc_id: d for d in iter_api_documents("keras", package_dir=keras_dir)}
    elapsed = time.perf_counter() - start
    for name in [
        "keras.callbacks.EarlyStopping",
        "keras.layers.LSTM",
        "keras.Model.fit",
        "keras.utils.image_dataset_from_directory",
        "keras.ops.sum",
        "keras.saving.register_keras_serializable",
    ]:
        assert name in docs, name
    fit = docs["keras.Model.fit"]
    assert "epochs" in fit.text
    assert "keras.models.Model.fit" in fit.aliases
    assert "keras.layers.LSTM.add_weight" not in docs
    assert 1000 <= len(docs) < 10000
    early = docs["keras.callbacks.EarlyStopping"]
    assert early.text.startswith(
        "# keras.callbacks.EarlyStopping\n\n```python\n"
        "keras.callbacks.EarlyStopping(monitor='val_loss', min_delta=0,"
    )
    assert early.url.startswith("https://github.com/keras-team/keras/blob/v")
    assert "/keras/src/callbacks/early_stopping.py#L" in early.url
    assert elapsed < 30
