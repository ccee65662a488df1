"""Tokenisation (split_identifier, raw_words, lexical_tokens) and chat-message cleanup."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from bot.retrieval import text as text_module
from bot.retrieval.text import (
    STOPWORDS,
    clean_query,
    lexical_tokens,
    raw_words,
    split_identifier,
)

# --- identifiers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "parts"),
    [
        ("EarlyStopping", ["Early", "Stopping"]),
        ("image_dataset_from_directory", ["image", "dataset", "from", "directory"]),
        ("LSTMCell", ["LSTM", "Cell"]),
        ("HTTPServer", ["HTTP", "Server"]),
        ("Conv2D", ["Conv", "2", "D"]),
        ("MultiHeadAttention", ["Multi", "Head", "Attention"]),
        ("_private", ["private"]),
        ("__init__", ["init"]),
        ("lstm", ["lstm"]),
        ("LSTM", ["LSTM"]),
        ("", []),
        ("___", []),
    ],
)
def test_split_identifier(token: str, parts: list[str]) -> None:
    assert split_identifier(token) == parts


def test_raw_words_keep_identifiers_whole_and_split() -> None:
    assert raw_words("EarlyStopping") == ["earlystopping", "early", "stopping"]
    assert raw_words("use image_dataset_from_directory") == [
        "use",
        "image_dataset_from_directory",
        "image",
        "dataset",
        "from",
        "directory",
    ]
    assert raw_words("tf.keras.layers.LSTM") == ["tf", "keras", "layers", "lstm"]
    assert raw_words("keras 3.1.0 and 42") == ["keras", "3.1.0", "3", "1", "0", "and", "42"]
    assert lexical_tokens("keras 3.1.0 and 42") == ["kera", "3.1.0", "42"]
    assert raw_words("__ _") == []


def test_lexical_tokens_expand_stem_and_drop_stop_words() -> None:
    assert lexical_tokens("How do I use EarlyStopping callbacks with the model?") == [
        "earlystop",
        "earli",
        "stop",
        "callback",
        "model",
    ]
    assert lexical_tokens("Training layers running stopped") == ["train", "layer", "run", "stop"]


def test_lexical_tokens_single_letters_and_stop_words_only() -> None:
    assert lexical_tokens("a b c x y z") == []
    assert lexical_tokens("how do I do this, please? thanks!") == []
    assert lexical_tokens("") == []
    # Every stop word is dropped on its own (stop words are matched before stemming).
    assert lexical_tokens(" ".join(sorted(STOPWORDS))) == []


def test_lexical_tokens_same_words_same_tokens_whatever_the_spelling() -> None:
    # Index time and query time must agree: case and identifier style do not matter.
    assert set(lexical_tokens("early stopping")) <= set(lexical_tokens("EarlyStopping"))
    assert set(lexical_tokens("image dataset from directory")) <= set(
        lexical_tokens("image_dataset_from_directory")
    )
    assert lexical_tokens("LSTM Layers") == lexical_tokens("lstm layers")


# --- clean_query -----------------------------------------------------------------------------

TRACEBACK_MESSAGE = """My model fails when I call fit:
Traceback (most recent call last):
  File "/home/u/train.py", line 12, in <module>
    model.fit(x, y, epochs=3)
  File "/usr/lib/python3.11/site-packages/keras/src/trainers/trainer.py", line 120, in fit
    raise ValueError("bad")
    ^^^^^^^^^^^^^^^^^^^^^^^
ValueError: Input 0 of layer "dense" is incompatible with the layer
any idea?"""


def test_traceback_reduced_to_its_final_error_line() -> None:
    prose, code = clean_query(TRACEBACK_MESSAGE)
    assert prose.splitlines() == [
        "My model fails when I call fit:",
        'ValueError: Input 0 of layer "dense" is incompatible with the layer',
        "any idea?",
    ]
    assert "Traceback" not in prose
    assert "File " not in prose
    assert "^^^" not in prose
    # The quoted source lines of the frames are code.
    assert "model.fit(x, y, epochs=3)" in code
    assert 'raise ValueError("bad")' in code
    assert "site-packages" not in code


def test_indented_lines_without_traceback_stay_prose() -> None:
    prose, code = clean_query("I wrote\n    x = keras.Input((3,))\nand it broke")
    assert code == ""
    assert "x = keras.Input((3,))" in prose


def test_fenced_code_goes_to_code() -> None:
    message = (
        "Why does this fail?\n```python\nimport keras\nmodel = keras.Sequential()\n```\n"
        "It says shape mismatch.\n```\nmodel.fit(x)\n```"
    )
    prose, code = clean_query(message)
    assert prose == "Why does this fail?\nIt says shape mismatch."
    assert code == "import keras\nmodel = keras.Sequential()\n\nmodel.fit(x)"


def test_unclosed_fence_runs_to_the_end() -> None:
    prose, code = clean_query("see:\n```py\nx = 1\ny = 2")
    assert prose == "see:"
    assert code == "x = 1\ny = 2"


def test_html_tags_and_urls_removed() -> None:
    prose, code = clean_query(
        "Hi <b>all</b>, see https://keras.io/api/layers/?q=1#x and "
        "http://example.com/a_b <img src=x onerror=alert(1)> <br/> thanks"
    )
    assert prose == "Hi all , see and thanks"
    assert code == ""
    assert "<" not in prose
    assert "http" not in prose
    assert "onerror" not in prose


def test_progress_bars_removed_and_crlf_normalised() -> None:
    prose, _ = clean_query(
        "Epoch 1/10\r\n32/32 [==============================] - 1s 10ms/step - loss: 0.5\r\n"
        "25/25 ━━━━━━━━━━━━━━━━━━━━ 1s 3ms/step\r\nloss keeps rising"
    )
    assert prose == "Epoch 1/10\nloss keeps rising"


def test_whitespace_collapsed() -> None:
    assert clean_query("  lots \t of   space\n\n\n\nhere  ") == ("lots of space\nhere", "")


class _CountingPattern:
    """A compiled regex that records the length of every string it is asked to scan."""

    def __init__(self, pattern: re.Pattern[str], scanned: list[int]) -> None:
        self._pattern = pattern
        self._scanned = scanned

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._pattern, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            strings = [a for a in args if isinstance(a, str)]
            self._scanned.append(len(strings[-1]))  # sub(repl, string): the last one
            return method(*args, **kwargs)

        return counted


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths of the strings that clean_query's module-level regexes scan."""
    lengths: list[int] = []
    for name in dir(text_module):
        value = getattr(text_module, name)
        if isinstance(value, re.Pattern):
            monkeypatch.setattr(text_module, name, _CountingPattern(value, lengths))
    return lengths


# The longest piece of a message that clean_query reads (4 x the query limit).
_READ_LIMIT = 4 * 4000


def test_enormous_input_is_truncated(scanned: list[int]) -> None:
    words = "keras layer dropout LSTM fit shape mismatch " * 3000  # ~130 KB
    code_lines = "x = layers.Dense(3)\n" * 5000
    message = f"{words}\n```python\n{code_lines}```"
    assert len(message) > 100_000
    prose, code = clean_query(message)
    tokens = lexical_tokens(f"{prose}\n{code}")
    assert 0 < len(prose) <= 4000
    assert len(code) <= 4000
    assert tokens
    # The work is bounded by a fixed piece of the message, however long it is: no regex ever
    # scans more than that piece, and what lies beyond it changes nothing.
    assert scanned and max(scanned) <= _READ_LIMIT
    assert clean_query(message) == clean_query(message[:_READ_LIMIT])


@pytest.mark.timeout(60)  # a hang guard for catastrophic backtracking, not a speed bar
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("\n" * 100_000, ("", "")),
        ("\n " * 50_000, ("", "")),
        ("1" * 100_000, ("1" * 4000, "")),
        ('  File "x", line 12\n' * 20_000, ("", "")),
        ("Traceback (most recent call last):" + " " * 100_000, ("", "")),
    ],
    ids=["newlines", "newline-space", "digits", "frame-like", "traceback-head"],
)
def test_pathological_input_is_cleaned(
    message: str, expected: tuple[str, str], scanned: list[int]
) -> None:
    assert clean_query(message) == expected
    assert scanned and max(scanned) <= _READ_LIMIT


def _binaryish(seed: int) -> str:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(5000)).decode("latin-1")


@pytest.mark.parametrize(
    "message",
    [
        "",
        " ",
        "\x00\x01\x02\xff" * 100,
        _binaryish(1),
        _binaryish(2) + "```" + _binaryish(3),
        "\ufeff\u200b\u202e zero-width and bidi",
        "Как использовать LSTM в Keras?",
        "如何在Keras中使用EarlyStopping回调?",
        "😀🔥 model.fit 💥",
        "```",
        "```\n",
        "<" * 1000 + ">" * 1000,
        "http://" * 500,
        'File "x", line 1\n' * 200,
        "\r\n" * 1000,
    ],
)
def test_odd_input_does_not_crash(message: str) -> None:
    prose, code = clean_query(message)
    assert isinstance(prose, str)
    assert isinstance(code, str)
    assert len(prose) <= 4000
    assert len(code) <= 4000
    tokens = lexical_tokens(f"{prose}\n{code}")
    assert all(t and t.isascii() for t in tokens)


def test_non_english_text_keeps_ascii_identifiers() -> None:
    prose, _ = clean_query("如何在Keras中使用EarlyStopping回调?")
    assert "earlystop" in lexical_tokens(prose)
    assert "lstm" in lexical_tokens("Как использовать LSTM в Keras?")


def test_empty() -> None:
    assert clean_query("") == ("", "")
