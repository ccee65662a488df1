"""bot.answering.missing_info: what to ask for before answering, the ask, and follow-ups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.answering.missing_info import (
    KINDS,
    MAX_CHARS,
    VERSION_COMMAND,
    MissingInfo,
    detect_missing,
    fuller_text,
    has_code_block,
    render_ask,
    supplies_missing,
)
from bot.answering.render import markdown_to_html, markdown_to_text

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "missing_info.jsonl"

TRACEBACK = """```
Traceback (most recent call last):
  File "train.py", line 31, in <module>
    model.fit(ds, epochs=3)
  File "/usr/lib/python3.11/site-packages/keras/src/trainers/trainer.py", line 120, in fit
    raise TypeError("bad")
TypeError: bad
```"""
IPYTHON_TRACEBACK = """```
RuntimeError                              Traceback (most recent call last)
Cell In[12], line 3
----> 3 model.fit(train_ds, epochs=2)

RuntimeError: Expected all tensors to be on the same device
```"""
MODEL_CODE = """```python
model = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
model.compile(loss="categorical_crossentropy", optimizer="adam")
model.fit(x, y)
```"""


def kinds(text: str, **kwargs: bool) -> tuple[str, ...]:
    return detect_missing(text, **kwargs).kinds


# -- version ---------------------------------------------------------------------------------


def test_an_error_with_no_version_asks_for_version_and_backend() -> None:
    info = detect_missing("I get an error when I call model.fit, what am I doing wrong?")
    assert info.kinds == ("version", "traceback")
    assert VERSION_COMMAND in info.items[0].ask


@pytest.mark.parametrize(
    "named",
    [
        "keras 3.4",
        "Keras 3",
        "tf 2.15",
        "TF2.12",
        "tensorflow==2.16.1",
        "tensorflow-gpu 2.10",
        "tf.keras",
        "tensorflow.keras",
        "keras_core",
        "keras-nlp 0.8",
        "KERAS_BACKEND=jax",
        'os.environ["KERAS_BACKEND"] = "torch"',
        "the torch backend",
        "with JAX",
        "Using TensorFlow backend.",
        "the latest keras",
        "keras.__version__ prints 3.6.0",
        "pip show keras says\nName: keras\nVersion: 3.7.0\n",
    ],
)
def test_any_named_version_or_backend_counts(named: str) -> None:
    text = f"{named}\nI get an error when I call model.fit, what am I doing wrong?"
    assert "version" not in kinds(text)


def test_library_frames_in_a_traceback_name_the_version() -> None:
    # keras/src/trainers/... is Keras 3; the path tells a maintainer which Keras it is.
    text = f"model.fit fails:\n{TRACEBACK}"
    assert kinds(text) == ()


def test_a_python_version_is_not_a_keras_version() -> None:
    assert "version" in kinds("On python 3.11 I get an error when I call fit, any idea?")


@pytest.mark.parametrize(
    "text",
    [
        "How do I install keras with GPU support? pip install worked but it only uses the CPU",
        "model.fit is really slow compared to plain pytorch, is that expected?",
        "Repeatedly calling model.predict results in a memory leak",
    ],
)
def test_install_and_performance_problems_ask_only_for_the_version(text: str) -> None:
    assert kinds(text) == ("version",)


# -- traceback -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "keras 3.3 with tensorflow: model.save raises TypeError: cannot pickle 'RLock' object",
        'keras 3.8 + JAX: I keep getting the error "Attempting to use a tracer outside its scope"',
        "tf.keras: my code crashes with RuntimeError when I call fit",
        "Keras 3, torch backend: this error keeps showing up when I run fit",
    ],
)
def test_an_error_without_frames_asks_for_the_traceback(text: str) -> None:
    assert kinds(text) == ("traceback",)


@pytest.mark.parametrize("frames", [TRACEBACK, IPYTHON_TRACEBACK])
def test_frames_in_any_common_format_count_as_the_traceback(frames: str) -> None:
    assert "traceback" not in kinds(f"keras 3.3, torch backend, fit fails:\n{frames}")


def test_the_ask_names_the_quoted_exception() -> None:
    info = detect_missing("keras 3.3: model.save raises TypeError: cannot pickle it")
    assert info.items[0].ask.startswith("the full traceback of the TypeError")


@pytest.mark.parametrize(
    "text",
    [
        "ModuleNotFoundError: No module named 'keras.layers.core'",
        "ImportError: cannot import name 'to_categorical' from 'keras.utils'",
        "AttributeError: module 'keras' has no attribute 'utils'",
        "pip install keras-nlp fails with ERROR: Could not find a version that satisfies it",
    ],
)
def test_errors_whose_message_says_it_all_ask_only_for_the_version(text: str) -> None:
    assert kinds(text) == ("version",)


def test_an_attachment_silences_everything_but_the_version() -> None:
    text = "Hey, I get this error when I run fit, see screenshot"
    assert kinds(text) == ("version", "traceback")
    assert kinds(text, has_attachment=True) == ("version",)
    assert kinds(f"keras 3.1 {text}", has_attachment=True) == ()


# -- code ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "keras 3.4, jax backend: my LSTM doesn't learn anything, the loss stays at 0.693",
        "tf.keras 2.12: after loading, predict returns the same class for every image",
        "Keras 3 (torch backend): the loss becomes nan after a few epochs",
        "keras 3.5: my callback's on_epoch_end is not called at all",
        "tf 2.15: my GAN generator collapses and outputs noise",
    ],
)
def test_a_problem_described_without_code_asks_for_code(text: str) -> None:
    assert kinds(text) == ("code",)


@pytest.mark.parametrize(
    "code",
    [
        MODEL_CODE,
        "model.compile(optimizer='adam', loss='mse')\nmodel.fit(x, y, epochs=20)",
        "from keras import layers\nx = layers.Dense(3)(inputs)",
    ],
)
def test_code_in_the_text_counts(code: str) -> None:
    text = f"keras 3.6, torch backend: the loss becomes nan after 3 epochs\n{code}"
    assert kinds(text) == ()


def test_the_code_flag_from_the_formatted_body_counts() -> None:
    text = "keras 3.6, torch backend: the loss becomes nan after 3 epochs"
    assert kinds(text) == ("code",)
    assert kinds(text, has_code=True) == ()


def test_a_pre_block_in_the_html_body_is_a_code_block() -> None:
    assert has_code_block("<p>see</p><pre><code class='language-python'>x = 1</code></pre>")
    assert not has_code_block("<p>inline <code>model.fit()</code> only</p>")
    assert not has_code_block(None)


def test_prose_that_mentions_a_call_is_not_code() -> None:
    text = "keras 3.6, torch backend: after model.fit(x, y) the loss becomes nan, not sure why"
    assert kinds(text) == ("code",)


def test_an_install_problem_that_breaks_everything_does_not_ask_for_code() -> None:
    text = "After pip install --upgrade tensorflow, my imports are broken and nothing works"
    assert kinds(text) == ("version",)


def test_an_error_asks_for_its_traceback_not_for_code() -> None:
    assert kinds("tf.keras: it doesn't work, I get ValueError: bad value") == ("traceback",)


# -- shapes ----------------------------------------------------------------------------------


def test_a_shape_error_alone_asks_for_model_code_and_shapes_not_the_traceback() -> None:
    info = detect_missing("ValueError: Shapes (None, 1) and (None, 10) are incompatible")
    assert info.kinds == ("version", "shapes")
    assert "x.shape" in info.items[1].ask


@pytest.mark.parametrize(
    "error",
    [
        "Incompatible shapes: [32,10] vs. [32,1]",
        "expected ndim=3, found ndim=2",
        "Dimensions must be equal, but are 64 and 128 for 'add'",
        "logits and labels must have the same first dimension",
        "Cannot convert a tensor of type float32 to int64",
    ],
)
def test_shape_and_dtype_errors(error: str) -> None:
    assert kinds(f"keras 3.2 (jax): I get {error}") == ("shapes",)


@pytest.mark.parametrize(
    "given",
    [
        MODEL_CODE,
        "My data is X.shape = (5000, 50).",
        "x is (1000, 8) float32 and y is (1000,).",
        "The model ends with `Dense(3, activation='softmax')`.",
    ],
)
def test_model_code_or_input_shapes_answer_the_shape_question(given: str) -> None:
    text = f"tf 2.15: ValueError: Shapes (None, 1) and (None, 10) are incompatible. {given}"
    assert kinds(text) == ()


def test_the_shapes_in_the_quoted_error_are_not_the_askers() -> None:
    quoted = (
        'keras 3.6 (jax): "Arguments must have the same shape. Received: '
        'target.shape=(None, 1), output.shape=(None, 3)" why?'
    )
    unquoted = (
        "keras 3.6: ValueError: Arguments `target` and `output` must have the same shape. "
        "Received: target.shape=(None, 1), output.shape=(None, 3)"
    )
    assert kinds(quoted) == ("shapes",)
    assert kinds(unquoted) == ("shapes",)


# -- quiet when unsure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Good morning everyone :)",
        "Thanks, that fixed it!",
        "How do I use EarlyStopping to keep the best weights?",
        "How do I compute the mean absolute error as a metric but train on mean squared error?",
        "What's the error rate I should expect on CIFAR-10 with a small ResNet?",
        "Should I use keras.losses.MeanSquaredError or MeanAbsoluteError here?",
        "Does masking work with Conv1D layers or only with RNNs?",
        "Will `model.fit` work with a Python generator that yields dicts?",
        "How do I add a GaussianNoise layer before my Dense layer?",
        "Is there a way to freeze only the first 10 layers of a ResNet50?",
    ],
)
def test_questions_that_report_no_problem_get_no_ask(text: str) -> None:
    assert detect_missing(text) == MissingInfo()
    assert not detect_missing(text)


def test_a_wish_is_not_a_report() -> None:
    assert kinds("How do I make the BatchNormalization layers not update their statistics?") == ()
    assert kinds("I want the embedding to not learn, is trainable=False enough?") == ()
    assert kinds("Keras 3: my BatchNormalization layers do not update") == ("code",)


def test_a_link_to_code_counts_like_an_attachment() -> None:
    text = "tf.keras: I get an error in fit, notebook: https://colab.research.google.com/drive/1abc"
    assert kinds(text) == ()
    text = "my model doesn't learn: https://gist.github.com/someone/0123abcd"
    assert kinds(text) == ("version",)


# -- the rendered ask ------------------------------------------------------------------------


def test_nothing_missing_renders_nothing() -> None:
    assert render_ask(MissingInfo()) == ""


def test_the_ask_is_one_line_listing_every_item_and_one_line_saying_what_happens_next() -> None:
    info = detect_missing("I get TypeError: cannot pickle when I save my model")
    markdown = render_ask(info)
    first, second = markdown.split("\n")
    assert first.startswith("To help, add: your Keras version and backend (")
    assert first.endswith(" and the full traceback of the TypeError (as text, in a code block).")
    assert "look again" in second
    assert "\n" not in render_ask(info, again=False)
    html = markdown_to_html(render_ask(info, again=False))
    command = VERSION_COMMAND.replace('"', "&quot;")
    assert f"<code>{command}</code>" in html


def test_items_are_joined_with_commas_and_and() -> None:
    items = (
        detect_missing("I get an error").items + detect_missing("tf.keras: it doesn't work").items
    )
    shapes = detect_missing("tf.keras: Incompatible shapes: [32,10] vs. [32,1]").items
    markdown = render_ask(MissingInfo(items + shapes), again=False)
    assert [i.kind for i in items + shapes] == ["version", "traceback", "code", "shapes"]
    assert markdown.count(", ") >= 2
    assert " block), a short piece of code" in markdown
    assert " and your model code and the shapes" in markdown


def test_the_askers_exception_name_is_escaped_in_the_markdown() -> None:
    # "__main__" would render as bold "main" if it were passed on as it is.
    info = detect_missing("keras 3.1: fit raises __main__.Bad_Error: it broke")
    assert info.kinds == ("traceback",)
    markdown = render_ask(info, again=False)
    assert "<strong>" not in markdown_to_html(markdown)
    assert "of the __main__.Bad_Error (as text" in markdown_to_text(markdown)


def test_to_json_lists_the_items() -> None:
    info = detect_missing("ValueError: Shapes (None, 1) and (None, 10) are incompatible")
    assert [item["kind"] for item in info.to_json()] == ["version", "shapes"]


# -- follow-ups ------------------------------------------------------------------------------

QUESTION = "I get an error when I call model.fit, what am I doing wrong?"


def test_a_reply_with_the_traceback_supplies_it() -> None:
    asked = detect_missing(QUESTION).kinds
    assert supplies_missing(asked, QUESTION, f"here it is:\n{TRACEBACK}")


def test_the_version_alone_waits_for_the_traceback_that_was_also_asked_for() -> None:
    # The traceback is what changes the answer; the bot answers again once, so it waits.
    assert not supplies_missing(("version", "traceback"), QUESTION, "keras 3.4 with jax")


def test_the_version_alone_is_enough_when_only_the_version_was_asked_for() -> None:
    question = "ModuleNotFoundError: No module named 'keras.layers.core'"
    asked = detect_missing(question).kinds
    assert asked == ("version",)
    assert supplies_missing(asked, question, "pip show says keras 3.6.0")
    assert not supplies_missing(asked, question, "python 3.11 on ubuntu")


def test_solved_means_no_second_answer() -> None:
    question = "ModuleNotFoundError: No module named 'keras.layers.core'"
    assert not supplies_missing(("version",), question, "never mind, solved it (keras 3.6)")


def test_a_solved_note_with_the_traceback_still_counts() -> None:
    # "fixed it, but now..." with frames: the new error is worth answering.
    assert supplies_missing(("traceback",), QUESTION, f"fixed it, but now:\n{TRACEBACK}")


def test_a_reply_with_code_or_a_code_block_supplies_code() -> None:
    question = "keras 3.4: my model doesn't learn"
    assert detect_missing(question).kinds == ("code",)
    assert supplies_missing(("code",), question, MODEL_CODE)
    assert supplies_missing(("code",), question, "see the block", has_code=True)
    assert not supplies_missing(("code",), question, "it's a simple CNN, nothing special")


def test_a_reply_with_the_input_shapes_supplies_shapes() -> None:
    question = "ValueError: Shapes (None, 1) and (None, 10) are incompatible"
    assert supplies_missing(("version", "shapes"), question, "x_train.shape is (60000, 28, 28)")


def test_an_edit_counts_only_what_it_added() -> None:
    question = "keras 3.4: I get an error when I call model.fit"
    edited = f"{question}\n\nEDIT: traceback:\n{TRACEBACK}"
    assert supplies_missing(("traceback",), question, edited, edit=True)
    # An edit that fixes a typo adds nothing that was asked for.
    assert not supplies_missing(("traceback",), question, question + "!", edit=True)
    assert not supplies_missing(("traceback",), question, question, edit=True)


def test_an_edit_that_drops_the_complaint_supplies_nothing() -> None:
    question = "keras 3.4: my model doesn't learn"
    assert not supplies_missing(("code",), question, "keras 3.4: my model", edit=True)


def test_nothing_asked_or_an_empty_follow_up_supplies_nothing() -> None:
    assert not supplies_missing((), QUESTION, TRACEBACK)
    assert not supplies_missing(("traceback",), QUESTION, "   ")


def test_fuller_text_appends_a_reply_and_takes_an_edit_whole() -> None:
    assert fuller_text("question \n", " more\n") == "question\n\nmore"
    assert fuller_text("question", "edited question", edit=True) == "edited question"


# -- the labelled set ------------------------------------------------------------------------


def test_the_labelled_set_is_well_formed_and_split_in_two_halves() -> None:
    records = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert 80 <= len(records) <= 130
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        assert r["split"] in ("dev", "held-out")
        assert set(r["missing"]) <= set(KINDS)
        assert r["text"].strip()
    dev = sum(r["split"] == "dev" for r in records)
    assert abs(dev - (len(records) - dev)) <= 10
    assert sum(not r["missing"] for r in records) >= 30  # questions that should not trigger


def test_a_long_message_is_read_at_its_start_and_its_end() -> None:
    # A flood is cut to MAX_CHARS: the version said first and the traceback's end still count.
    padding = "x = 1\n" * (MAX_CHARS // 4)
    assert kinds(f"keras 3.4: I get an error in fit\n{padding}{TRACEBACK}") == ()
    assert kinds(f"I get an error in fit\n{padding}") == ("version", "traceback")


def test_an_edit_in_two_places_counts_what_both_added() -> None:
    question = "keras 3.4: my model doesn't learn\nany idea?"
    edited = f"keras 3.4: my model doesn't learn\n{MODEL_CODE}\nany idea?\nthanks"
    assert supplies_missing(("code",), question, edited, edit=True)
