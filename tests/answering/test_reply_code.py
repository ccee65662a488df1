"""The README's example question, asked through the bot's real answer path (LiveAnswerer: the
encoder, hybrid search, compose_reply with the page's chunks), gets its code example: on the
tiny corpus here, and on a full-corpus index (``slow``) when one is published."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest

from bot.answering.render import markdown_to_html, markdown_to_text
from bot.answering.snippets import MAX_LINES
from bot.retrieval.index import current_version, load_index
from bot.retrieval.search import Retriever
from bot.room.answerer import LiveAnswerer
from bot.settings import load_settings
from tests.conftest import REPO

QUESTION = "How do I stop training when the validation loss stops improving?"
# A data dir whose indexes/CURRENT is a full-corpus index (keras API + keras-io docs), only read.
FULL_DATA = Path(os.environ.get("SUPPORTBOT_TEST_FULL_DATA_DIR", REPO / ".cache" / "eval-data"))


def check_code_reply(answer: LiveAnswerer) -> str:
    reply = answer(QUESTION)
    with_code = [s for s in reply.sources if s.snippet]
    assert len(with_code) == 1 and with_code[0] is reply.sources[0], reply.markdown
    code = with_code[0].snippet
    assert "EarlyStopping(" in code and "loss" in code
    assert len(code.splitlines()) <= MAX_LINES
    ast.parse(code)  # whole statements, no prompts
    assert ">>>" not in code
    # Under the first source's line, inside its list item; rendered as a python block.
    lines = reply.markdown.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("1. ["))
    assert lines[first + 1] == "   ```python"
    html = markdown_to_html(reply.markdown)
    assert '<pre><code class="language-python">' in html and "\\" not in html
    text = markdown_to_text(reply.markdown)
    assert "\\" not in text and "```" not in text
    return reply.markdown


def test_the_readme_question_gets_the_guides_code_on_the_tiny_corpus(
    tmp_path: Path, index_dir: Path, encoder: Any
) -> None:
    import shutil

    shutil.copytree(index_dir, tmp_path / "indexes")
    settings = load_settings(data_dir=tmp_path)
    answer = LiveAnswerer(settings, Retriever(load_index(settings.index_root), encoder))
    markdown = check_code_reply(answer)
    assert (
        "   ```python\n"
        '   callback = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3)\n'
        "   model.fit(x, y, validation_split=0.2, callbacks=[callback])\n"
        "   ```"
    ) in markdown


@pytest.mark.slow
@pytest.mark.skipif(
    current_version(FULL_DATA / "indexes") is None,
    reason=f"no published full-corpus index under {FULL_DATA} (SUPPORTBOT_TEST_FULL_DATA_DIR)",
)
def test_the_readme_question_gets_an_early_stopping_example_on_the_full_corpus(
    encoder: Any,
) -> None:
    settings = load_settings(data_dir=FULL_DATA)
    index = load_index(settings.index_root)  # read only: nothing is written to FULL_DATA
    if index.model != "all-MiniLM-L6-v2":
        pytest.skip(f"the index was built with {index.model}, the test encoder is MiniLM")
    markdown = check_code_reply(LiveAnswerer(settings, Retriever(index, encoder)))
    assert "keras.callbacks.EarlyStopping(" in markdown or "EarlyStopping(" in markdown
