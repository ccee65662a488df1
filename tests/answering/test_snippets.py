"""bot.answering.snippets: which code example of a page a reply shows, on chunks laid out the
way the index lays them out (header line, blank line, Markdown body; API pages as
``index_builder.sources.python_api`` writes them)."""

from __future__ import annotations

import ast

import pytest

from bot.answering.render import markdown_to_html
from bot.answering.snippets import MAX_LINES, Snippet, best_snippet, fenced, normalise
from bot.corpus.documents import Document
from index_builder.chunking import chunk_document
from index_builder.sources.python_api import docstring_to_markdown

QUESTION = "How do I stop training when the validation loss stops improving?"

# An API page the way python_api.iter_api_documents writes one (docstring written here).
API_DOC = """# keras.callbacks.EarlyStopping

```python
keras.callbacks.EarlyStopping(monitor='val_loss', patience=0, verbose=0)
```

{doc}
"""
DOCSTRING = """Stop training when a monitored quantity has stopped improving.

Args:
    monitor: Quantity to watch, such as `"val_loss"`.
    patience: Epochs without improvement before training stops.

Example:

>>> stopper = keras.callbacks.EarlyStopping(monitor='val_loss',
...                                         patience=3)
>>> history = model.fit(x, y, validation_split=0.2, epochs=50,
...                     callbacks=[stopper], verbose=0)
>>> len(history.history['loss'])
7
"""


def api_chunks() -> list[str]:
    doc = Document(
        doc_id="keras.callbacks.EarlyStopping",
        title="keras.callbacks.EarlyStopping",
        url="https://keras.io/api/callbacks/early_stopping/",
        source="python-api:keras",
        source_version="3",
        text=API_DOC.format(doc=docstring_to_markdown(DOCSTRING)),
        kind="api",
    )
    return [c.text for c in chunk_document(doc)]


def chunk(body: str, section: str = "Guide > Section") -> str:
    return f"{section}\n\n{body}"


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


# --- docstring examples ----------------------------------------------------------------------


def test_docstring_example_loses_prompts_and_output() -> None:
    chunks = api_chunks()
    assert any("## Example" in c or "> Example" in c for c in chunks)
    got = best_snippet(chunks, QUESTION, symbol="keras.callbacks.EarlyStopping")
    assert got == Snippet(
        code=(
            "stopper = keras.callbacks.EarlyStopping(monitor='val_loss',\n"
            "                                        patience=3)\n"
            "history = model.fit(x, y, validation_split=0.2, epochs=50,\n"
            "                    callbacks=[stopper], verbose=0)\n"
            "len(history.history['loss'])"
        )
    )
    assert ">>>" not in got.code and "\n7" not in got.code  # prompts and the output "7" gone
    assert parses(got.code)


def test_the_api_pages_own_signature_is_not_an_example() -> None:
    intro_only = api_chunks()[:1]
    assert "keras.callbacks.EarlyStopping(monitor='val_loss'" in intro_only[0]
    assert best_snippet(intro_only, QUESTION, symbol="keras.callbacks.EarlyStopping") is None


def test_the_example_is_found_beyond_the_chunk_that_matched() -> None:
    chunks = api_chunks()
    args = next(c for c in chunks if "> Args" in c.split("\n", 1)[0])
    assert best_snippet([args], QUESTION) is None  # the matched chunk alone has no code
    assert best_snippet([args, *chunks], QUESTION) is not None


def test_indented_code_under_an_example_heading() -> None:
    body = (
        "    stopper = EarlyStopping(monitor='val_loss', patience=2)\n"
        "    model.fit(x, y, callbacks=[stopper])\n"
    )
    got = best_snippet(chunk(body, "keras.callbacks.EarlyStopping > Example"), QUESTION)
    assert got is not None and got.code.startswith("stopper = EarlyStopping(")
    # Indented text elsewhere (argument lists) is not code.
    assert best_snippet(chunk(body, "keras.callbacks.EarlyStopping > Args"), QUESTION) is None


# --- guide code cells ------------------------------------------------------------------------


def test_fenced_guide_cell() -> None:
    body = (
        "Training can end on its own when the validation loss stops improving.\n\n"
        "```python\n"
        'stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3)\n'
        "model.fit(x, y, validation_split=0.2, callbacks=[stopper])\n"
        "```\n"
    )
    got = best_snippet(chunk(body), QUESTION)
    assert got is not None
    assert got.code.splitlines()[0].startswith("stopper = keras.callbacks.EarlyStopping(")
    assert got.language == "python" and not got.trimmed


def test_program_output_is_never_a_snippet() -> None:
    # keras.io fences program output without a language.
    for output in (
        "Epoch 1/3\n100/100 - loss: 0.31 - val_loss: 0.29\nEpoch 2/3",
        "array([0.5, 0.25], dtype=float32)",
        "{'loss': 0.3, 'val_loss': 0.28}  # stopped early",
    ):
        assert best_snippet(chunk(f"```\n{output}\n```"), QUESTION) is None, output
    # The same fence holding code that does something is code.
    code = "stopper = EarlyStopping(monitor='val_loss')\nmodel.fit(x, y, callbacks=[stopper])"
    assert best_snippet(chunk(f"```\n{code}\n```"), QUESTION) is not None


def test_shell_lines_and_other_languages_are_left_out() -> None:
    body = (
        "```shell\npip install keras  # stop training validation loss\n```\n\n"
        "```python\n!pip install -q keras\nstopper = EarlyStopping(monitor='val_loss')\n"
        "model.fit(x, y, callbacks=[stopper])\n```"
    )
    got = best_snippet(chunk(body), QUESTION)
    assert got is not None and "pip" not in got.code


def test_code_that_does_not_parse_is_skipped() -> None:
    broken = "```python\nstopper = EarlyStopping(monitor='val_loss',\n```"  # cut mid-call
    assert best_snippet(chunk(broken), QUESTION) is None


def test_lines_that_only_show_a_value_are_dropped() -> None:
    # In a doctest or notebook, `output.shape` printed something; without the output it is noise.
    body = (
        "```python\n"
        ">>> stopper = EarlyStopping(monitor='val_loss', patience=3)\n"
        ">>> stopper.patience\n"
        "3\n"
        ">>> history = model.fit(x, y, callbacks=[stopper])\n"
        ">>> history.history['val_loss'][-1]\n"
        "0.25\n"
        ">>> print(len(history.epoch))\n"
        "```"
    )
    got = best_snippet(chunk(body), QUESTION)
    assert got is not None and got.code == (
        "stopper = EarlyStopping(monitor='val_loss', patience=3)\n"
        "history = model.fit(x, y, callbacks=[stopper])\n"
        "print(len(history.epoch))"
    )
    only_values = "```python\n>>> stopper.patience\n3\n>>> val_loss_history\n```"
    assert best_snippet(chunk(only_values), QUESTION) is None


def test_an_import_alone_is_not_an_example() -> None:
    body = "```python\nfrom keras.callbacks import EarlyStopping  # stop on val loss\n```"
    assert best_snippet(chunk(body), QUESTION, symbol="keras.callbacks.EarlyStopping") is None


# --- fit to the question ---------------------------------------------------------------------


def test_no_code_no_snippet() -> None:
    assert best_snippet(chunk("Only prose about stopping training early."), QUESTION) is None
    assert best_snippet([], QUESTION) is None
    assert best_snippet("", QUESTION) is None


def test_code_unrelated_to_the_question_is_not_shown() -> None:
    body = "```python\ntotal = keras.ops.sum(values, axis=0)\nprint(total)\n```"
    assert best_snippet(chunk(body), QUESTION) is None
    # Generic words (model, keras, layers) shared with any snippet do not make it fit.
    generic = "```python\nmodel = keras.Sequential([keras.layers.Dense(1)])\n```"
    assert best_snippet(chunk(generic), "How do I build a keras model with layers?") is None


def test_one_shared_term_fits_only_with_the_pages_symbol() -> None:
    body = "```python\nstopper = EarlyStopping(patience=3)\n```"
    question = "what does patience mean?"
    assert best_snippet(chunk(body), question) is None
    assert best_snippet(chunk(body), question, symbol="keras.callbacks.EarlyStopping") is not None


def test_the_best_fitting_then_shortest_block_wins() -> None:
    long_fit = (
        "```python\n"
        "stopper = EarlyStopping(monitor='val_loss', patience=3)\n"
        "model.compile(optimizer='adam')\n"
        "model.fit(x, y, callbacks=[stopper])\n"
        "```"
    )
    short_fit = "```python\nstopper = EarlyStopping(monitor='val_loss', patience=3)\n```"
    weak = "```python\nhistory = model.fit(x, y)  # training\n```"
    got = best_snippet(chunk(f"{weak}\n\n{long_fit}\n\n{short_fit}"), QUESTION)
    assert got is not None and got.code == (
        "stopper = EarlyStopping(monitor='val_loss', patience=3)"
    )


# --- length ----------------------------------------------------------------------------------


def test_a_long_block_is_cut_to_whole_statements() -> None:
    filler = [f"step_{i} = prepare(dataset, step={i})" for i in range(20)]
    call = [
        "stopper = keras.callbacks.EarlyStopping(",
        "    monitor='val_loss',",
        "    patience=3,",
        ")",
        "model.fit(x, y, validation_split=0.2, callbacks=[stopper])",
    ]
    code = "\n".join([*filler[:12], *call, *filler[12:]])
    got = best_snippet(chunk(f"```python\n{code}\n```"), QUESTION)
    assert got is not None and got.trimmed
    assert got.line_count <= MAX_LINES
    assert parses(got.code)  # never cut inside the bracket
    assert "\n".join(call) in got.code


def test_a_block_whose_fitting_statement_alone_is_too_long_is_skipped() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES + 2))
    code = f"def stop_training_on_validation_loss():\n{body}\n    return 'stopped'"
    assert best_snippet(chunk(f"```python\n{code}\n```"), QUESTION) is None
    assert best_snippet(chunk(f"```python\n{code}\n```"), QUESTION, max_lines=30) is not None


def test_a_repeated_tail_of_a_block_is_not_taken_for_a_whole_example() -> None:
    # Consecutive chunks repeat the last lines of a block; out of its function that tail
    # still parses, but it is not an example.
    whole = (
        "```python\n"
        "def train(model):\n"
        "    stopper = EarlyStopping(monitor='val_loss', patience=3)\n"
        "    return model.fit(x, y, validation_split=0.2, callbacks=[stopper])\n"
        "```"
    )
    tail = "```python\n    return model.fit(x, y, validation_split=0.2, callbacks=[stopper])\n```"
    got = best_snippet([chunk(tail), chunk(whole)], QUESTION)
    assert got is not None and got.code.startswith("def train(model):")


def test_normalise_dedents_and_drops_prompts_and_output() -> None:
    assert normalise(
        "    >>> a = 1\n    >>> a\n    1\n    >>> for i in []:\n    ...     pass\n"
    ) == ("a = 1\na\nfor i in []:\n    pass")
    assert normalise("\n\n  x = 1\n\n\n\n  y = 2\n\n") == "x = 1\n\ny = 2"
    assert normalise("%matplotlib inline\n!pip install keras\nx = 1") == "x = 1"


# --- the fence -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "x = 1",
        'doc = """\n```\nnot the end\n```\n"""',
        "s = '</code></pre><script>alert(1)</script>'",
        "text = '[link](javascript:alert(1)) <img src=x onerror=alert(1)>'",
        "a = '````'\n\nb = 2",
    ],
)
def test_fenced_code_renders_as_one_python_block(code: str) -> None:
    html = markdown_to_html(fenced(code))
    assert html.startswith('<pre><code class="language-python">')
    assert html.endswith("</code></pre>") and html.count("<pre>") == 1
    assert "<script" not in html and "<img" not in html and "<a " not in html
    inner = html[len('<pre><code class="language-python">') : -len("</code></pre>")]
    import html as htmllib

    assert htmllib.unescape(inner) == code + "\n"


def test_fenced_inside_a_list_item() -> None:
    md = "1. [Page](https://keras.io/) — text\n" + fenced("x = 1\n\ny = 2", indent="   ")
    md += "\n2. [Other](https://keras.io/other/)"
    html = markdown_to_html(md)
    assert html.count("<ol>") == 1 and html.count("<li>") == 2
    assert '<li><a href="https://keras.io/">Page</a> — text<pre><code class="language-python">' in (
        html
    )
    assert "x = 1\n\ny = 2\n</code></pre>\n</li>" in html
