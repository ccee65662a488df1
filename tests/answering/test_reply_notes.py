"""The Keras 3 notes and the named backend in the suggested reply (compose_reply)."""

from __future__ import annotations

import json

from bot.answering.keras_versions import MIGRATION_GUIDE, VersionNote
from bot.answering.render import markdown_to_html
from bot.answering.reply import compose_reply
from tests.answering.test_answering import hit, result

FIT_GENERATOR = (
    "My training script stopped working after upgrading:\n"
    "```python\nmodel.fit_generator(train_gen, steps_per_epoch=100, epochs=10)\n```\n"
    "AttributeError: 'Sequential' object has no attribute 'fit_generator'"
)


def test_fit_generator_question_gets_the_keras3_note() -> None:
    hits = [hit("guides/training_with_built_in_methods", 0.03, title="Training with fit()")]
    reply = compose_reply(result(hits, 0.9, query=FIT_GENERATOR), threshold=0.5)
    lines = reply.markdown.splitlines()
    note = next(line for line in lines if line.startswith("**Keras 3:**"))
    assert "`fit_generator` was removed" in note
    assert "`model.fit(...)`" in note
    assert "(https://keras.io/api/models/model_training_apis/#fit-method)" in note
    # Under the sources, above the confidence line.
    assert lines.index(note) > 2 and lines[-1].startswith("Confidence:")
    data = reply.to_json()
    assert [n["key"] for n in data["notes"]] == ["fit_generator"]
    assert set(data["notes"][0]) == {
        "key",
        "legacy",
        "change",
        "replacement",
        "link",
        "source",
        "evidence",
        "from_error",
    }
    assert data["notes"][0]["from_error"] is True  # the AttributeError line
    json.dumps(data)
    html = markdown_to_html(reply.markdown)
    assert "<strong>Keras 3:</strong> <code>fit_generator</code>" in html


def test_note_is_there_when_retrieval_is_unsure_or_empty() -> None:
    code_only = "Is this still right?\n```python\nmodel.fit_generator(train_gen, epochs=10)\n```"
    unsure = compose_reply(result([hit("a", 0.01)], 0.1, query=code_only), threshold=0.5)
    assert not unsure.would_reply
    assert "**Keras 3:** `fit_generator`" in unsure.markdown
    # The quoted error is itself the Keras 3 change: the note answers it, so the bot replies.
    from_error = compose_reply(result([hit("a", 0.01)], 0.1, query=FIT_GENERATOR), threshold=0.5)
    assert from_error.would_reply
    assert from_error.markdown.startswith("This error comes from a change in Keras 3")
    # The note is the answer: right under the lead, once, the pages after it.
    lines = from_error.markdown.splitlines()
    assert lines[2].startswith("**Keras 3:** `fit_generator`")
    assert lines.index("These pages may help too:") < lines.index(
        next(x for x in lines if x.startswith("1. "))
    )
    assert from_error.markdown.count("**Keras 3:**") == 1
    empty = compose_reply(result([], 0.0, query=FIT_GENERATOR), threshold=0.5)
    assert empty.markdown.splitlines()[0].startswith("I couldn't find anything")
    assert "**Keras 3:** `fit_generator`" in empty.markdown
    assert [n.key for n in empty.notes] == ["fit_generator"]


def test_at_most_two_note_lines_but_all_notes_in_json() -> None:
    query = (
        "from keras.utils import np_utils\nopt = Adam(lr=0.01)\n"
        "model.fit_generator(gen)\nmodel.predict_classes(x)"
    )
    reply = compose_reply(result([hit("a", 0.03)], 0.9, query=query), threshold=0.5)
    assert sum(line.startswith("**Keras 3:**") for line in reply.markdown.splitlines()) == 2
    assert len(reply.notes) == 4


def test_notes_argument_overrides_detection() -> None:
    mine = VersionNote("k", "old", "is gone", "use `new`", MIGRATION_GUIDE, "table", "old()")
    none = compose_reply(
        result([hit("a", 0.03)], 0.9, query=FIT_GENERATOR), threshold=0.5, notes=()
    )
    assert "Keras 3" not in none.markdown and none.notes == []
    given = compose_reply(result([hit("a", 0.03)], 0.9), threshold=0.5, notes=[mine])
    assert f"**Keras 3:** `old` is gone; use `new`. [Migration guide]({MIGRATION_GUIDE})" in (
        given.markdown
    )


def test_plain_question_has_no_notes_and_no_backend() -> None:
    reply = compose_reply(result([hit("a", 0.03)], 0.9), threshold=0.5)
    assert reply.notes == [] and reply.backend is None
    assert "Keras 3" not in reply.markdown


def test_named_backend_is_a_field() -> None:
    query = "With the JAX backend, how do I write a custom train_step?"
    reply = compose_reply(result([hit("a", 0.03)], 0.9, query=query), threshold=0.5)
    assert reply.backend == "jax" and reply.to_json()["backend"] == "jax"
