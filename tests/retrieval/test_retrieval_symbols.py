"""match_symbols / SymbolTable on a handmade table of Keras API names."""

from __future__ import annotations

import pytest

from bot.retrieval.symbols import SymbolMatch, SymbolTable, match_symbols

API = [
    ("keras.layers.LSTM", ["keras.layers.recurrent.LSTM"]),
    ("keras.layers.Dense", []),
    ("keras.layers.Dropout", []),
    ("keras.callbacks.EarlyStopping", ["keras.callbacks.early_stopping.EarlyStopping"]),
    ("keras.callbacks.CSVLogger", []),
    ("keras.optimizers.Adam", []),
    ("keras.optimizers.RMSprop", []),
    ("keras.layers.LSTMCell", []),
    ("keras.Model", ["keras.models.Model"]),
    ("keras.Model.fit", ["keras.models.Model.fit"]),
    ("keras.Model.export", []),
    ("keras.Sequential.fit", []),
    ("keras.utils.image_dataset_from_directory", []),
    # "Hashing" names four symbols (ambiguous, but few enough to offer three of them) ...
    ("keras.layers.Hashing", []),
    ("keras.ns1.Hashing", []),
    ("keras.ns2.Hashing", []),
    ("keras.ns3.Hashing", []),
    # ... and "Orthogonal" seven (too many to say anything).
    *[(f"keras.space{i}.Orthogonal", []) for i in range(7)],
]


@pytest.fixture(scope="module")
def table() -> SymbolTable:
    return SymbolTable.build(API)


def matches(text: str, table: SymbolTable) -> list[tuple[str, float]]:
    return [(m.doc_id, m.strength) for m in match_symbols(text, table)]


# --- the table -------------------------------------------------------------------------------


def test_table_indexes_full_names_aliases_and_suffixes(table: SymbolTable) -> None:
    assert table.by_full["keras.layers.LSTM"] == "keras.layers.LSTM"
    assert table.by_full["keras.layers.recurrent.LSTM"] == "keras.layers.LSTM"
    assert table.by_full["keras.models.Model.fit"] == "keras.Model.fit"
    assert table.by_suffix["LSTM"] == ("keras.layers.LSTM",)
    assert table.by_suffix["layers.LSTM"] == ("keras.layers.LSTM",)
    assert table.by_suffix["recurrent.LSTM"] == ("keras.layers.LSTM",)
    assert table.by_suffix["Model.fit"] == ("keras.Model.fit",)
    assert set(table.methods["fit"]) == {"keras.Model.fit", "keras.Sequential.fit"}
    assert "fit" not in table.by_lower_last  # methods are only reachable through a receiver
    assert table.by_lower_last["lstm"] == ("keras.layers.LSTM",)
    assert table.by_lower_last["model"] == ("keras.Model",)
    assert len(table.by_suffix["Orthogonal"]) == 7


def test_first_document_wins_a_contested_full_name() -> None:
    t = SymbolTable.build([("keras.a.X", ["keras.X"]), ("keras.b.X", ["keras.X"])])
    assert t.by_full["keras.X"] == "keras.a.X"
    assert t.by_suffix["X"] == ("keras.a.X", "keras.b.X")


# --- mentions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mention",
    [
        "keras.layers.LSTM",
        "keras.layers.recurrent.LSTM",
        "tf.keras.layers.LSTM",
        "tensorflow.keras.layers.LSTM",
        "tensorflow.python.keras.layers.LSTM",
        "keras_core.layers.LSTM",
        "tf_keras.layers.LSTM",
    ],
)
def test_full_dotted_name_is_strongest(mention: str, table: SymbolTable) -> None:
    found = match_symbols(f"I use {mention}(64) here", table)
    assert found[0] == SymbolMatch("keras.layers.LSTM", 1.0, mention)
    assert [m.doc_id for m in found] == ["keras.layers.LSTM"]


def test_partial_dotted_names(table: SymbolTable) -> None:
    assert matches("layers.LSTM(32)", table) == [("keras.layers.LSTM", 0.9)]
    assert matches("mylib.Dropout(0.5)", table) == [("keras.layers.Dropout", 0.7)]
    # A bare ALLCAPS name is already 0.8, so an unknown qualifier does not weaken it.
    assert matches("mylib.LSTM", table) == [("keras.layers.LSTM", 0.8)]
    assert matches("callbacks.EarlyStopping", table) == [("keras.callbacks.EarlyStopping", 0.9)]


@pytest.mark.parametrize(
    "text", ["model.fit(x, y, epochs=3)", "my_model.fit(ds)", "base_model.fit ( ds )"]
)
def test_instance_method_call_maps_to_its_class(text: str, table: SymbolTable) -> None:
    found = match_symbols(text, table)
    assert found[0].doc_id == "keras.Model.fit"
    assert found[0].strength == 0.8
    assert [m.doc_id for m in found] == ["keras.Model.fit"]


def test_receiver_names_pick_the_class(table: SymbolTable) -> None:
    assert matches("seq.fit(x)", table) == [("keras.Sequential.fit", 0.8)]
    # An unknown receiver could be either class: the evidence is weak and shared.
    assert sorted(matches("trainer.fit(x)", table)) == [
        ("keras.Model.fit", 0.2),
        ("keras.Sequential.fit", 0.2),
    ]


def test_bare_method_call_is_weak_and_stop_words_are_skipped(table: SymbolTable) -> None:
    assert match_symbols("then export(path) fails", table) == [
        SymbolMatch("keras.Model.export", 0.4, "export(")
    ]
    assert matches("calling fit(x) twice", table) == []  # "fit" means fitting far more often


@pytest.mark.parametrize(
    ("text", "doc_id"),
    [
        ("EarlyStopping never triggers", "keras.callbacks.EarlyStopping"),
        ("an LSTM with 64 units", "keras.layers.LSTM"),
        ("image_dataset_from_directory ignores labels", "keras.utils.image_dataset_from_directory"),
    ],
)
def test_camel_allcaps_and_snake_names(text: str, doc_id: str, table: SymbolTable) -> None:
    assert matches(text, table) == [(doc_id, 0.8)]


@pytest.mark.parametrize(
    ("text", "doc_id"),
    [
        ("my LSTMCell is slow", "keras.layers.LSTMCell"),
        ("CSVLogger writes nothing", "keras.callbacks.CSVLogger"),
        ("RMSprop diverges", "keras.optimizers.RMSprop"),
    ],
)
def test_acronym_prefixed_names_are_as_strong_as_camel_case(
    text: str, doc_id: str, table: SymbolTable
) -> None:
    assert matches(text, table) == [(doc_id, 0.8)]


def test_plain_words_are_weak(table: SymbolTable) -> None:
    assert matches("should I add dropout", table) == [("keras.layers.Dropout", 0.3)]
    assert matches("Dropout or not?", table) == [("keras.layers.Dropout", 0.3)]
    assert matches("adam vs sgd", table) == [("keras.optimizers.Adam", 0.3)]
    assert matches("a dense net", table) == [("keras.layers.Dense", 0.3)]


@pytest.mark.parametrize(
    "text",
    [
        "my model overfits",
        "Model is slow",
        "the models and layers and callbacks",
        "training loss and accuracy",
        "",
        "   \n\t",
        "numpy.linalg.norm and torch.nn.Module",
        "e.g. this, i.e. that",
    ],
)
def test_everyday_words_and_unknown_names_match_nothing(text: str, table: SymbolTable) -> None:
    assert match_symbols(text, table) == []


def test_name_shared_by_too_many_symbols_is_ignored(table: SymbolTable) -> None:
    assert matches("Orthogonal init", table) == []
    assert matches("use ORTHOGONAL init", table) == []
    # A qualified mention is still unambiguous.
    assert matches("space3.Orthogonal", table) == [("keras.space3.Orthogonal", 0.9)]


def test_ambiguous_name_is_offered_to_at_most_three_symbols(table: SymbolTable) -> None:
    found = match_symbols("Hashing collisions", table)
    assert [m.doc_id for m in found] == [
        "keras.layers.Hashing",
        "keras.ns1.Hashing",
        "keras.ns2.Hashing",
    ]
    assert all(m.strength == pytest.approx(0.3 / 3) for m in found)
    assert matches("Hashing collisions", table) == matches(
        "Hashing collisions", table
    )  # deterministic


def test_strongest_first_and_no_duplicates(table: SymbolTable) -> None:
    text = (
        "After tf.keras.layers.LSTM I added dropout, EarlyStopping and "
        "callbacks.CSVLogger, then trainer.fit(x) and model.fit(x); also LSTM and lstm again, "
        "layers.LSTM and keras.layers.LSTM."
    )
    found = match_symbols(text, table)
    strengths = [m.strength for m in found]
    assert strengths == sorted(strengths, reverse=True)
    doc_ids = [m.doc_id for m in found]
    assert len(doc_ids) == len(set(doc_ids))
    assert dict(matches(text, table)) == {
        "keras.layers.LSTM": 1.0,
        "keras.callbacks.CSVLogger": 0.9,
        "keras.callbacks.EarlyStopping": 0.8,
        "keras.Model.fit": 0.8,
        "keras.Sequential.fit": 0.2,
        "keras.layers.Dropout": 0.3,
    }
    lstm = next(m for m in found if m.doc_id == "keras.layers.LSTM")
    assert lstm.mention == "tf.keras.layers.LSTM"  # the strongest mention is the one kept


def test_stronger_mention_later_in_text_replaces_a_weaker_one(table: SymbolTable) -> None:
    found = match_symbols("lstm, or rather keras.layers.LSTM", table)
    assert found == [SymbolMatch("keras.layers.LSTM", 1.0, "keras.layers.LSTM")]


def test_empty_table_matches_nothing() -> None:
    empty = SymbolTable.build([])
    assert match_symbols("keras.layers.LSTM EarlyStopping model.fit(x) dropout", empty) == []


def test_max_per_mention_parameter(table: SymbolTable) -> None:
    one = match_symbols("Hashing", table, max_per_mention=1)
    assert one == []  # four candidates > 2 * 1: too ambiguous
    two = match_symbols("Hashing", table, max_per_mention=2)
    assert [m.doc_id for m in two] == ["keras.layers.Hashing", "keras.ns1.Hashing"]


# --- the title's symbols are the subject -------------------------------------------------------


def test_symbols_named_only_below_a_naming_title_count_half(table: SymbolTable) -> None:
    from bot.retrieval.symbols import BODY_ONLY_WEIGHT, subject_symbols
    from bot.retrieval.text import clean_query, title_line

    question = (
        "Fine-tuning an LSTM never improves\n"
        "With Dense layers it trains; with LSTM and Dropout the loss stays flat."
    )
    prose, code = clean_query(question)
    whole = match_symbols(question, table)
    found = subject_symbols(whole, title_line(prose, code), table)
    strength = {m.doc_id: m.strength for m in found}
    before = {m.doc_id: m.strength for m in whole}
    assert strength["keras.layers.LSTM"] == before["keras.layers.LSTM"]  # in the title too
    for body_only in ("keras.layers.Dense", "keras.layers.Dropout"):
        assert strength[body_only] == pytest.approx(before[body_only] * BODY_ONLY_WEIGHT)
    assert found[0].doc_id == "keras.layers.LSTM"  # strongest first, as match_symbols sorts


@pytest.mark.parametrize(
    "question",
    [
        "My training never improves\nWith Dense layers it trains; with LSTM it stays flat.",
        "Why does LSTM train slower than Dense?",  # one line: nothing is "below"
    ],
)
def test_a_title_naming_no_symbol_or_a_one_line_question_changes_nothing(
    question: str, table: SymbolTable
) -> None:
    from bot.retrieval.symbols import subject_symbols
    from bot.retrieval.text import clean_query, title_line

    prose, code = clean_query(question)
    whole = match_symbols(question, table)
    assert subject_symbols(whole, title_line(prose, code), table) == whole


def test_title_line_is_the_first_line_of_a_question_with_more_below() -> None:
    from bot.retrieval.text import title_line

    assert title_line("Title here\nand the body", "") == "Title here"
    assert title_line("Only a line", "") == ""
    assert title_line("How do I use it?", "model.fit(x)") == "How do I use it?"  # code below
    assert title_line("", "model.fit(x)") == ""
