"""Keras 3 notes: the installed-keras checks, the reviewed table, and the collected snippets.

The snippets (tests/fixtures/legacy_snippets*.jsonl) are short tracebacks and code lines
written in the style of public questions; "expect" lists the note keys the question should
get, "known_misses" names notes it deserves but the bot cannot give yet (counted as misses by
benchmarks/version_notes.py, not asserted here).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.answering.keras_versions import (
    MIGRATION_GUIDE,
    ChangeRow,
    KerasApi,
    VersionNote,
    active_rows,
    canonical,
    code_text,
    detect_legacy_apis,
    installed_keras_api,
    load_table,
    notes_markdown,
    parse_table,
    scan_keras_package,
)
from tests.conftest import FIXTURES, SHARED

SNIPPET_FILES = ("legacy_snippets.jsonl", "legacy_snippets_heldout.jsonl")


def snippets() -> list[dict[str, Any]]:
    out = []
    for name in SNIPPET_FILES:
        for n, line in enumerate((FIXTURES / name).read_text(encoding="utf-8").splitlines()):
            record = json.loads(line)
            record["id"] = f"{name.split('.')[0]}:{n + 1}"
            out.append(record)
    return out


SNIPPETS = snippets()
needs_keras = pytest.mark.skipif(installed_keras_api() is None, reason="keras 3 not installed")


# --- the collected snippets -----------------------------------------------------------------


def test_snippet_files_have_enough_of_both_kinds() -> None:
    positives = [s for s in SNIPPETS if s["expect"] or s.get("known_misses")]
    negatives = [s for s in SNIPPETS if not s["expect"] and not s.get("known_misses")]
    assert len(positives) >= 80 and len(negatives) >= 80


@needs_keras
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s["id"] for s in SNIPPETS])
def test_snippet_gets_exactly_the_expected_notes(snippet: dict[str, Any]) -> None:
    notes = detect_legacy_apis(snippet["text"])
    assert sorted(n.key for n in notes) == sorted(snippet["expect"])
    assert len({n.key for n in notes}) == len(notes)  # one note per change


@needs_keras
def test_every_table_row_fires_on_some_snippet() -> None:
    fired = {k for s in SNIPPETS for k in s["expect"]}
    assert {row.id for row in load_table()} <= fired


# --- the table ------------------------------------------------------------------------------


def test_table_rows_are_complete_and_short() -> None:
    rows = load_table()
    assert len(rows) >= 25
    for row in rows:
        assert row.patterns or row.symbols, row.id
        assert row.link.startswith("https://keras.io/"), row.id
        for text in (row.change, row.use):
            assert text and not text.endswith("."), row.id
        # One line in a chat reply: keep the note short.
        note = VersionNote(row.id, row.legacy, row.change, row.use, row.link, "table", "")
        assert len(note.markdown()) <= 330, row.id


@needs_keras
def test_table_symbols_are_absent_from_the_installed_keras() -> None:
    """Every symbol a row speaks for is really gone (else the row would be switched off)."""
    api = installed_keras_api()
    assert api is not None
    for row in load_table():
        present = [s for s in row.symbols if api.exists(s)]
        assert not present, (row.id, present)
    assert active_rows(load_table(), api) == load_table()


def test_table_links_are_pages_of_the_site_map() -> None:
    site_map = SHARED / "keras-io-docs" / "site_map.json"
    if not site_map.exists():
        pytest.skip("../shared/keras-io-docs not present")
    from index_builder.sources.site_map import SiteMap

    pages = SiteMap.load(site_map)
    for row in load_table():
        path = row.link.removeprefix("https://keras.io/").split("#")[0].strip("/")
        assert path in pages, (row.id, path)


def test_a_row_is_switched_off_when_its_symbols_come_back() -> None:
    rows = parse_table(
        """
[[change]]
id = "gone"
legacy = "old_fn"
change = "was removed"
use = "use `new_fn`"
link = "https://keras.io/api/"
patterns = ['\\bold_fn\\b']
symbols = ["keras.utils.old_fn", "Model.old_method"]
"""
    )
    back = KerasApi(
        "3.99",
        frozenset({"keras", "keras.utils"}),
        {"keras.utils": frozenset({"old_fn"})},
        frozenset({"old_method"}),
    )
    half = KerasApi(
        "3.99",
        frozenset({"keras", "keras.utils"}),
        {"keras.utils": frozenset({"old_fn"})},
        frozenset(),
    )
    assert active_rows(rows, back) == ()
    assert active_rows(rows, half) == rows
    assert [n.key for n in detect_legacy_apis("old_fn(1)", api=back, rows=rows)] == []
    assert [n.key for n in detect_legacy_apis("old_fn(1)", api=half, rows=rows)] == ["gone"]


def test_duplicate_row_ids_are_refused() -> None:
    row = '[[change]]\nid = "a"\nlegacy = "x"\nchange = "c"\nuse = "u"\nlink = "l"\n'
    with pytest.raises(ValueError, match="duplicate"):
        parse_table(row + row)


# --- reading the installed package ----------------------------------------------------------


def test_scan_reads_public_modules_and_names_without_importing(tmp_path: Path) -> None:
    pkg = tmp_path / "keras"
    files = {
        "__init__.py": "from keras import layers as layers\nfrom keras.src import Model as Model\n",
        "layers/__init__.py": "from keras.src.layers import Dense as Dense\nraise SystemExit\n",
        "layers/extra/__init__.py": "def helper():\n    pass\nCONSTANT = 1\n",
        "src/__init__.py": "",
        "src/models/model.py": "class Model:\n    def fit(self):\n        pass\n    name = 'm'\n",
        "_private/__init__.py": "",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text, encoding="utf-8")
    api = scan_keras_package(pkg, "3.0.0")
    assert api.modules == {"keras", "keras.layers", "keras.layers.extra"}
    assert api.names["keras.layers"] == {"Dense"}
    assert api.names["keras.layers.extra"] == {"helper", "CONSTANT"}
    assert api.model_members == {"fit", "name"}
    assert api.exists("keras.Model") and api.exists("keras.layers.extra")
    assert api.exists("Model.fit") and not api.exists("Model.fit_generator")
    assert not api.exists("keras.layers.core") and not api.exists("keras.layers.Conv2D")
    assert api.modules_with("Dense") == ["keras.layers"]


@needs_keras
def test_installed_keras_facts() -> None:
    api = installed_keras_api()
    assert api is not None and api.version and api.version.startswith("3")
    for present in (
        "keras.layers.Dense",
        "keras.utils.to_categorical",
        "keras.ops.mean",
        "Model.fit",
    ):
        assert api.exists(present), present
    for absent in ("keras.layers.core", "keras.utils.np_utils", "Model.fit_generator"):
        assert not api.exists(absent), absent
    assert installed_keras_api() is api  # read once


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ("tf.keras.layers.Dense", "keras.layers.Dense"),
        ("tensorflow.keras.backend", "keras.backend"),
        ("keras.api._v2.keras.backend", "keras.backend"),
        ("tf.keras", "keras"),
        ("tf.compat.v1.keras.backend", None),
        ("tensorflow.python.keras.layers", None),
        ("keras.src.engine", None),
        ("numpy.mean", None),
        ("K.mean", None),
    ],
)
def test_canonical_paths(dotted: str, expected: str | None) -> None:
    assert canonical(dotted) == expected


def test_canonical_follows_the_questions_aliases() -> None:
    assert canonical("K.mean", {"K": "keras.backend"}) == "keras.backend.mean"
    assert canonical("L.Dense", {"L": "tensorflow.keras.layers"}) == "keras.layers.Dense"


def test_code_text_keeps_code_and_drops_prose() -> None:
    text = (
        "I read keras.io docs and keras.layers.core in prose.\n"
        "Here: `keras.layers.Dense` and\n```python\nfrom keras.layers.core import Dense\n```\n"
        "x = K.mean(y)\n"
    )
    code = code_text(text)
    assert "from keras.layers.core import Dense" in code
    assert "keras.layers.Dense" in code and "x = K.mean(y)" in code
    assert "in prose" not in code


# --- the notes ------------------------------------------------------------------------------


@needs_keras
def test_derived_note_names_the_new_home() -> None:
    (note,) = detect_legacy_apis("from keras.layers.core import Dense, Dropout")
    assert note.source == "installed-keras"
    assert note.markdown() == (
        "**Keras 3:** `keras.layers.core` does not exist; use "
        "`from keras.layers import Dense, Dropout`. "
        f"[Migration guide]({MIGRATION_GUIDE})"
    )
    (ops,) = detect_legacy_apis("loss = K.mean(y)")
    assert ops.replacement == "use `keras.ops.mean`"


@needs_keras
@pytest.mark.parametrize(
    ("text", "keys"),
    [
        (
            "My script does from keras.layers.core import Dense; now it fails",
            ["missing:keras.layers.core"],
        ),
        ("from keras.layers import (\n    Dense,\n    CuDNNLSTM,\n)", ["cudnn_rnn"]),
        ("from tensorflow.keras import backend as B\nB.set_session(s)", ["tf1_session"]),
        ("import tensorflow.keras.layers as L\nL.CuDNNGRU(8)", ["cudnn_rnn"]),
        ("from keras import layers as L\nx = L.merge.concatenate([a, b])", ["merge_layer"]),
        ("from keras.layers import Dense, CuDNNLSTM, Merge", ["cudnn_rnn", "merge_layer"]),
        ("I switched from keras import to tf.keras", []),
    ],
)
def test_imports_and_aliases(text: str, keys: list[str]) -> None:
    assert [n.key for n in detect_legacy_apis(text)] == keys


@needs_keras
def test_notes_from_error_messages_are_flagged() -> None:
    text = "model.predict_classes(x)\nImportError: cannot import name 'np_utils' from 'keras.utils'"
    notes = {n.key: n for n in detect_legacy_apis(text)}
    assert notes["np_utils"].from_error and not notes["predict_classes"].from_error


def test_table_only_without_the_installed_package() -> None:
    text = "from keras.layers.core import Dense\nmodel.fit_generator(gen)"
    assert [n.key for n in detect_legacy_apis(text, use_installed=False)] == ["fit_generator"]


@needs_keras
def test_error_messages_come_first_then_order_of_appearance() -> None:
    text = (
        "model.save('model.h5')\nsgd = SGD(lr=0.1)\n"
        "AttributeError: 'Sequential' object has no attribute 'predict_classes'"
    )
    keys = [n.key for n in detect_legacy_apis(text)]
    assert keys == ["predict_classes", "save_h5", "optimizer_lr_argument"]
    assert len(notes_markdown(detect_legacy_apis(text))) == 2


@needs_keras
@pytest.mark.parametrize(
    "text",
    [
        "from keras.layers.core import Dense # <img src=x onerror=alert(1)> [x](javascript:1)",
        "from keras.layers.core import `Dense`<b>",
        "keras.layers.core.Dense_</script>(3)",
        "K.mean_*evil*_(x)",
    ],
)
def test_note_lines_carry_no_raw_user_text(text: str) -> None:
    for note in detect_legacy_apis(text):
        line = note.markdown()
        assert "<" not in line and "javascript" not in line and "*evil" not in line
        assert re.fullmatch(r"[\w.]+", note.legacy) or note.source == "table"


def test_inputs_that_look_like_row_material_but_are_not() -> None:
    assert detect_legacy_apis("") == []
    assert detect_legacy_apis("```\n```") == []
    assert detect_legacy_apis("Adam(" * 2000) == []


def test_rows_are_frozen_and_typed() -> None:
    row = load_table()[0]
    assert isinstance(row, ChangeRow)
    with pytest.raises(AttributeError):
        row.id = "x"  # type: ignore[misc]
