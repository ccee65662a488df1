"""bot.answering.excerpts: argument entries whole, named arguments from anywhere on the page."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.answering.excerpts import best_excerpt, named_in_code, passages, stitched_passages
from index_builder.chunking import chunk_document
from tests.api_docs import early_stopping

ARGS = """keras.layers.LSTM > Args

    units: Positive integer, dimensionality of the output space.
    dropout: Float between 0 and 1. Fraction of the units to drop for the
        linear transformation of the inputs. Default: 0.
    recurrent_dropout: Float between 0 and 1. Fraction of the units to drop
        for the linear transformation of the recurrent state. Default: 0.
"""
CALL = """keras.layers.LSTM > Call arguments

    inputs: A 3D tensor, with shape `(batch, timesteps, feature)`.
    training: Python boolean indicating whether the layer should behave in
        training mode or in inference mode. This is only relevant if `dropout` or
        `recurrent_dropout` is used (optional). Defaults to `None`.
"""


def test_an_argument_entry_is_one_passage_with_its_continuation_lines() -> None:
    found = passages(ARGS)
    assert [p.argument for p in found] == ["units", "dropout", "recurrent_dropout"]
    assert found[1].text == (
        "dropout: Float between 0 and 1. Fraction of the units to drop for the linear "
        "transformation of the inputs. Default: 0."
    )
    # A bare sentence list still splits by sentence, and the title line is not a passage.
    prose = passages("Guide > Section\n\nFirst sentence of the section. The second one, here.")
    assert [p.text for p in prose] == ["First sentence of the section.", "The second one, here."]


def test_before_an_entry_is_never_glued_the_end_of_the_one_above() -> None:
    # The old sentence splitter read "Defaults to `None`. training: ..." as one sentence.
    assert best_excerpt(CALL, "training mode").startswith("`training`: Python boolean")


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("LSTM(64, dropout=0.2) overfits, what else?", "`dropout`: Float"),
        ("what does `recurrent_dropout` change?", "`recurrent_dropout`: Float"),
        ("is recurrent_dropout slower on GPU?", "`recurrent_dropout`: Float"),
    ],
)
def test_an_argument_written_as_code_comes_from_another_chunk_of_the_page(
    question: str, expected: str
) -> None:
    assert best_excerpt(CALL, question, page=[ARGS, CALL]).startswith(expected)


def test_plain_words_and_exception_names_do_not_name_an_argument() -> None:
    # "dropout" as a word is not the argument: the matched chunk keeps its best sentence.
    assert best_excerpt(CALL, "how to add dropout", page=[ARGS, CALL]).startswith("`training`:")
    assert named_in_code("Precision and recall for a tensor x") == {}
    assert list(named_in_code("ValueError: `ValueError` raised by fit(x, y, epochs=3)")) == [
        "epochs"
    ]
    assert named_in_code("use `dropout` or recurrent_dropout=0.1") == {
        "dropout": 5,
        "recurrent_dropout": 17,
    }


def test_of_several_named_arguments_the_first_the_question_names_wins() -> None:
    question = "recurrent_dropout vs `dropout`: which one?"
    assert best_excerpt(ARGS, question).startswith("`recurrent_dropout`:")
    assert best_excerpt(ARGS, "`dropout` vs recurrent_dropout").startswith("`dropout`:")


def test_a_chunk_of_code_only_falls_back_to_the_intro() -> None:
    code_only = "keras.layers.LSTM > Example\n\n```python\nlstm = keras.layers.LSTM(4)\n```"
    intro = "keras.layers.LSTM\n\nLong Short-Term Memory layer - Hochreiter 1997."
    assert best_excerpt(code_only, "lstm layer", intro=intro) == (
        "Long Short-Term Memory layer - Hochreiter 1997."
    )
    assert best_excerpt(code_only, "lstm layer") == ""


def test_an_entry_the_chunker_cut_is_read_whole_from_the_next_chunk() -> None:
    """The installed keras' docstring of ``keras.callbacks.EarlyStopping``, chunked as the
    index does: small chunks cut its argument list, and a chunk starts with the carried-over
    head of an entry flattened onto one line, its rest indented below."""
    doc = early_stopping()
    # The section windows only: each entry also gets a chunk of its own (its section path
    # ends with the argument's name), which is never cut.
    chunks = [
        c.text
        for c in chunk_document(doc, max_words=60, overlap_words=12)
        if c.section.count(" > ") < 2
    ]
    assert len(chunks) > 3
    question = "Why is restore_best_weights not the default?"
    shown = best_excerpt(chunks[0], question, page=chunks, limit=1000)
    assert shown.startswith("`restore_best_weights`: Whether to restore model weights")
    assert "Defaults to `False`." in shown  # the entry's end, past the chunk boundary
    # Read chunk by chunk, that entry is cut at the chunk's end.
    alone = [p for c in chunks for p in passages(c) if p.argument == "restore_best_weights"]
    stitched = [
        p
        for i in range(len(chunks))
        for p in stitched_passages(chunks, i)
        if p.argument == "restore_best_weights"
    ]
    assert [p.cut for p in alone] == [True] and [p.cut for p in stitched] == [False]


def test_long_entries_are_cut_at_a_word_with_an_ellipsis() -> None:
    shown = best_excerpt(ARGS, "`recurrent_dropout`", limit=60)
    assert shown.endswith("…") and len(shown) <= 60 and shown.startswith("`recurrent_dropout`:")


def test_a_returns_line_alone_gives_way_to_the_intro() -> None:
    returns = "keras.applications.ResNet50 > Returns\n\n    A model instance."
    intro = "keras.applications.ResNet50\n\nInstantiates the ResNet50 architecture."
    assert best_excerpt(returns, "ResNet50 model", intro=intro) == (
        "Instantiates the ResNet50 architecture."
    )


def test_an_entry_is_not_completed_from_another_section() -> None:
    """The last entry of an Args chunk looks cut (nothing follows it in the chunk); the next
    chunk's indented first line belongs to its own section (Returns), not to that entry."""
    args = "keras.Model.predict > Args\n\n    verbose: Verbosity mode, 0 or 1."
    returns = "keras.Model.predict > Returns\n\n    NumPy array(s) of predictions."
    [verbose] = stitched_passages([args, returns], 0)
    assert verbose.text == "verbose: Verbosity mode, 0 or 1."
    assert [p.text for p in stitched_passages([args, returns], 1)] == [
        "NumPy array(s) of predictions."
    ]


# Text made of what the parser keys on: indentation, newlines, colons, backticks, fences.
_PIECES = st.sampled_from(
    [
        "\n",
        "\n\n",
        "    ",
        "        ",
        "name: ",
        "x_y: ",
        "```",
        "`",
        ". ",
        "Word",
        "a_b=",
        ":",
        "…",
    ]
)
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=40).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(_TEXT, min_size=1, max_size=4), question=_TEXT, limit=st.integers(2, 300))
def test_any_text_gives_a_line_no_longer_than_the_limit(
    chunks: list[str], question: str, limit: int
) -> None:
    shown = best_excerpt(chunks[0], question, page=chunks, intro=chunks[-1], limit=limit)
    assert isinstance(shown, str) and len(shown) <= limit and "\n" not in shown
    for i in range(len(chunks)):
        assert all(p.text for p in stitched_passages(chunks, i))


def test_an_argument_entry_chunk_shows_its_entry() -> None:
    """The chunker gives each argument entry a chunk of its own; a search that lands on it
    shows that entry, named as code, even for a question that writes no code."""
    entry = (
        "keras.callbacks.EarlyStopping > Args > patience\n\n"
        "    patience: Number of epochs with no improvement\n"
        "        after which training will be stopped.\n"
        "        Defaults to `0`."
    )
    assert best_excerpt(entry, "How long does it wait before stopping?") == (
        "`patience`: Number of epochs with no improvement after which training will be "
        "stopped. Defaults to `0`."
    )


def test_the_tail_of_a_sentence_cut_by_the_window_gives_way_to_a_whole_one() -> None:
    # A window starts where the chunker's overlap did: mid-sentence, in lower case.
    chunk = (
        "Training guide > Using callbacks\n\n"
        "email or instant message notifications when training ends - Etc.\n\n"
        "Callbacks can be passed as a list to your call to `fit()`:"
    )
    assert best_excerpt(chunk, "How do I stop training early?") == (
        "Callbacks can be passed as a list to your call to `fit()`:"
    )
    # Alone, the tail is still better than nothing; an argument entry is never a tail.
    assert best_excerpt(chunk.rsplit("\n\n", 1)[0], "training").startswith("email or")
    assert best_excerpt(ARGS, "dimensionality").startswith("`units`: Positive integer")
    # A sentence may start with a lower-case name: that is not a tail.
    named = "P > S\n\ntf.data pipelines feed `fit()` directly.\n\nSee the guide for more."
    assert best_excerpt(named, "tf.data").startswith("tf.data pipelines")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # The reply escapes everything but code spans, so markers would show as asterisks.
        (
            "There are two ways: **data parallelism** and **device parallelism**.",
            "There are two ways: data parallelism and device parallelism.",
        ),
        (
            "The validation data used will be the *last 10%* of the data, always.",
            "The validation data used will be the last 10% of the data, always.",
        ),
        (
            "***Special case of the `BatchNormalization` layer*** explained here.",
            "Special case of the `BatchNormalization` layer explained here.",
        ),
        # A flattened list keeps its items apart.
        (
            "This callback logs, including:\n* Metrics summary plots\n* Weight histograms",
            "This callback logs, including: • Metrics summary plots • Weight histograms",
        ),
        # ... also where the chunker's overlap flattened the list onto one line.
        (
            "user could add `mask` if the layer need them. * `get_config(self)`: Returns it.",
            "user could add `mask` if the layer need them. • `get_config(self)`: Returns it.",
        ),
        # Code, "**kwargs" and arithmetic keep their asterisks.
        (
            "Pass `*args` and `**kwargs` through; **kwargs: go to `fit()` as 2 * x.",
            "Pass `*args` and `**kwargs` through; **kwargs: go to `fit()` as 2 * x.",
        ),
    ],
)
def test_emphasis_and_list_markers_are_read_not_shown(text: str, shown: str) -> None:
    assert best_excerpt(f"Page > Section\n\n{text}", "anything", limit=1000) == shown


def test_a_code_block_ends_the_sentence_before_it() -> None:
    """The FAQ's answer: a sentence introduces the code, another thought follows it. Glued
    together they read "... callback: Find out more in the callbacks documentation."."""
    chunk = (
        "Keras FAQ > How can I interrupt training when the validation loss isn't decreasing?\n\n"
        "You can use an `EarlyStopping` callback:\n\n"
        "```python\nearly_stopping = EarlyStopping(monitor='val_loss', patience=2)\n```\n\n"
        "Find out more in the [callbacks documentation](/api/callbacks/)."
    )
    assert best_excerpt(chunk, "How do I stop training early with a callback?") == (
        "You can use an `EarlyStopping` callback:"
    )
    assert best_excerpt(chunk, "where is the callbacks documentation?") == (
        "Find out more in the callbacks documentation."
    )


def test_a_heading_is_no_sentence_unless_the_chunk_has_nothing_else() -> None:
    chunk = (
        "Transfer learning > Freezing layers\n\n"
        "**Example: setting `trainable` to `False`**\n\n"
        "```python\nlayer.trainable = False  # Freeze the layer\n```\n\n"
        "When a trainable weight becomes non-trainable, its value is no longer updated."
    )
    assert best_excerpt(chunk, "setting trainable to False to freeze a layer") == (
        "When a trainable weight becomes non-trainable, its value is no longer updated."
    )
    only = "Transfer learning > Freezing layers\n\n**Example: setting `trainable` to `False`**"
    assert best_excerpt(only, "trainable") == "Example: setting `trainable` to `False`"
