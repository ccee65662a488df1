"""Tests for index_builder.chunking: sections, windows, code fences and invariants."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from bot.corpus.documents import Chunk, Document, content_hash
from index_builder.chunking import chunk_document, chunk_documents
from tests.api_docs import early_stopping

FENCE_LINE = re.compile(r"^ {0,3}(```|~~~)")


def _doc(text: str, title: str = "Guide", doc_id: str = "guides/x") -> Document:
    return Document(
        doc_id=doc_id,
        title=title,
        url=f"https://keras.io/{doc_id}/",
        source="test",
        source_version="v",
        text=text,
    )


def _split(chunk: Chunk) -> tuple[str, str]:
    header, _, body = chunk.text.partition("\n\n")
    return header, body


def _words(text: str) -> list[str]:
    return text.split()


def _prose(rng: random.Random, n: int) -> str:
    vocab = ["layer", "model", "fit", "loss", "tensor", "batch", "epoch", "keras", "weights"]
    return " ".join(f"{rng.choice(vocab)}{rng.randrange(1000)}" for _ in range(n)) + "."


def _code(rng: random.Random, lines: int, lang: str = "python") -> str:
    body = "\n".join(f"x{i} = layer({rng.randrange(100)})  # step {i}" for i in range(lines))
    return f"```{lang}\n{body}\n```"


def _random_doc(seed: int) -> Document:
    """A page with nested sections, paragraphs of all sizes and code blocks."""
    rng = random.Random(seed)
    parts = ["# Guide", "", _prose(rng, 20), ""]
    for s in range(rng.randrange(2, 5)):
        parts += [f"## Section {s}", ""]
        for sub in range(rng.randrange(0, 3)):
            parts += [f"### Sub {s}.{sub}", ""]
            for _ in range(rng.randrange(1, 6)):
                if rng.random() < 0.35:
                    parts += [_code(rng, rng.randrange(1, 12)), ""]
                else:
                    parts += [_prose(rng, rng.randrange(5, 70)), ""]
    return _doc("\n".join(parts))


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n.*?^```$", text, flags=re.S | re.M)


def _check_invariants(doc: Document, chunks: list[Chunk], max_words: int) -> None:
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        header, body = _split(chunk)
        assert chunk.doc_id == doc.doc_id
        assert header == chunk.section
        assert chunk.section.split(" > ")[0] == doc.title
        assert chunk.hash == content_hash(chunk.text)
        assert body.strip()
        longest_line = max(len(line.split()) for line in body.split("\n"))
        assert len(_words(body)) <= max(max_words, longest_line)
        # Fences balance: no chunk ends inside a code block.
        assert sum(1 for line in body.split("\n") if FENCE_LINE.match(line)) % 2 == 0
    all_text = "\n".join(c.text for c in chunks)
    assert set(_words(doc.text)) - {"#", "##", "###", "####"} <= set(_words(all_text))


# -- sections ------------------------------------------------------------------------------


def test_section_paths() -> None:
    text = """# Transfer learning

Intro text.

## Freezing layers

Freeze them.

### The trainable attribute

Set it to False.

## Fine-tuning

Unfreeze.

#### Deep detail

Details.
"""
    chunks = chunk_document(_doc(text, title="Transfer learning"))
    assert [c.section for c in chunks] == [
        "Transfer learning",
        "Transfer learning > Freezing layers",
        "Transfer learning > Freezing layers > The trainable attribute",
        "Transfer learning > Fine-tuning",
        "Transfer learning > Fine-tuning > Deep detail",
    ]
    assert chunks[2].text == (
        "Transfer learning > Freezing layers > The trainable attribute\n\nSet it to False."
    )
    assert chunks[0].text == "Transfer learning\n\nIntro text."


def test_h1_that_differs_from_title_stays_in_path() -> None:
    chunks = chunk_document(_doc("# KerasNLP Models\n\nText.\n\n## Presets\n\nMore.", "Models"))
    assert [c.section for c in chunks] == [
        "Models > KerasNLP Models",
        "Models > KerasNLP Models > Presets",
    ]


def test_headings_inside_code_fences_are_ignored() -> None:
    text = """# Guide

## Saving

```python
# returns a compiled model
## also not a heading
model = load()
```

~~~
# tilde fenced comment
~~~

After the code.
"""
    chunks = chunk_document(_doc(text))
    assert [c.section for c in chunks] == ["Guide > Saving"]
    assert "# returns a compiled model" in chunks[0].text
    assert "# tilde fenced comment" in chunks[0].text
    assert "After the code." in chunks[0].text


def test_empty_sections_are_skipped_but_stay_in_the_path() -> None:
    text = "# Guide\n\n## Empty\n\n---\n\n### Child\n\nBody of child.\n\n## Next\n\nNext body.\n"
    chunks = chunk_document(_doc(text))
    assert [c.section for c in chunks] == ["Guide > Empty > Child", "Guide > Next"]


def test_heading_only_body_merges_into_next_section() -> None:
    text = "# Guide\n\n## Options\n\n##### Note\n\n## Details\n\nThe details.\n"
    chunks = chunk_document(_doc(text))
    assert [c.section for c in chunks] == ["Guide > Details"]
    assert "##### Note" in chunks[0].text
    assert "The details." in chunks[0].text


def test_trailing_heading_only_section_is_kept() -> None:
    chunks = chunk_document(_doc("# Guide\n\nBody.\n\n## End\n\n##### Fin\n"))
    assert [c.section for c in chunks] == ["Guide", "Guide > End"]
    assert chunks[1].text.endswith("##### Fin")


def test_no_headings_gives_title_sections() -> None:
    rng = random.Random(0)
    text = "\n\n".join(_prose(rng, 60) for _ in range(6))
    chunks = chunk_document(_doc(text, title="Plain page"))
    assert len(chunks) > 1
    assert {c.section for c in chunks} == {"Plain page"}
    _check_invariants(_doc(text, title="Plain page"), chunks, 160)


def test_empty_document_has_no_chunks() -> None:
    assert chunk_document(_doc("")) == []
    assert chunk_document(_doc("# Guide\n\n## Empty\n")) == []


# -- windows -------------------------------------------------------------------------------


def test_long_section_windows_overlap() -> None:
    rng = random.Random(1)
    paragraphs = [_prose(rng, 50) for _ in range(8)]
    doc = _doc("## Long\n\n" + "\n\n".join(paragraphs))
    chunks = chunk_document(doc, max_words=120, overlap_words=30)
    assert len(chunks) >= 3
    assert {c.section for c in chunks} == {"Guide > Long"}
    for prev, nxt in itertools.pairwise(chunks):
        prev_words, next_words = _words(_split(prev)[1]), _words(_split(nxt)[1])
        # The next window starts with trailing context of the previous one.
        shared = next_words[:10]
        assert " ".join(shared) in " ".join(prev_words[-40:])
    _check_invariants(doc, chunks, 120)


def test_windows_break_between_blocks() -> None:
    rng = random.Random(2)
    paragraphs = [_prose(rng, 40) for _ in range(6)]
    doc = _doc("\n\n".join(paragraphs))
    chunks = chunk_document(doc, max_words=100, overlap_words=0)
    for chunk in chunks:
        body = _split(chunk)[1]
        # Without overlap, every window is a run of whole paragraphs.
        assert all(p in paragraphs for p in body.split("\n\n"))


def test_code_blocks_are_never_split_when_they_fit() -> None:
    rng = random.Random(3)
    parts = []
    for _ in range(6):
        parts += [_prose(rng, 30), _code(rng, 8)]
    doc = _doc("## Code\n\n" + "\n\n".join(parts))
    chunks = chunk_document(doc, max_words=120, overlap_words=20)
    all_text = "\n".join(c.text for c in chunks)
    for block in _code_blocks(doc.text):
        assert block in all_text
    _check_invariants(doc, chunks, 120)


def test_giant_code_block_is_split_into_fenced_pieces() -> None:
    rng = random.Random(4)
    block = _code(rng, 80)  # 80 lines x 6 words
    doc = _doc(f"## Big\n\nBefore.\n\n{block}\n\nAfter.")
    chunks = chunk_document(doc, max_words=100, overlap_words=10)
    assert len(chunks) >= 5
    _check_invariants(doc, chunks, 100)
    all_text = "\n".join(c.text for c in chunks)
    for line in block.split("\n")[1:-1]:
        assert line in all_text
    for chunk in chunks:
        body = _split(chunk)[1]
        if "x1 = " in body or "step 40" in body:
            assert "```python" in body


def test_giant_single_line_paragraph_is_split_by_words() -> None:
    rng = random.Random(5)
    line = " ".join(f"word{i}" for i in range(500)) + " " + _prose(rng, 10)
    doc = _doc(line)
    chunks = chunk_document(doc, max_words=100, overlap_words=0)
    assert len(chunks) >= 5
    for chunk in chunks:
        assert len(_words(_split(chunk)[1])) <= 100
    assert " ".join(_words(" ".join(_split(c)[1] for c in chunks))) == " ".join(_words(line))


def test_long_sentences_paragraph_splits_on_sentences() -> None:
    sentences = [f"Sentence {i} " + " ".join(["filler"] * 20) + "." for i in range(12)]
    doc = _doc(" ".join(sentences))
    chunks = chunk_document(doc, max_words=100, overlap_words=0)
    for chunk in chunks:
        body = _split(chunk)[1]
        assert body.startswith("Sentence") and body.endswith(".")


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("max_words", "overlap"), [(160, 30), (60, 15), (30, 0)])
def test_invariants_on_random_documents(seed: int, max_words: int, overlap: int) -> None:
    doc = _random_doc(seed)
    chunks = chunk_document(doc, max_words=max_words, overlap_words=overlap)
    _check_invariants(doc, chunks, max_words)
    if max_words >= 60:
        all_text = "\n".join(c.text for c in chunks)
        for block in _code_blocks(doc.text):
            if len(block.split()) <= max_words:
                assert block in all_text


def test_deterministic_and_batch_matches_single() -> None:
    docs = [_random_doc(s) for s in range(3)]
    once = chunk_documents(docs, max_words=80, overlap_words=20)
    again = chunk_documents(docs, max_words=80, overlap_words=20)
    assert once == again
    assert once == [c for d in docs for c in chunk_document(d, max_words=80, overlap_words=20)]


def test_unclosed_fence_runs_to_the_end() -> None:
    doc = _doc("## A\n\nText.\n\n```python\n# not a heading\nx = 1\n")
    chunks = chunk_document(doc)
    assert [c.section for c in chunks] == ["Guide > A"]
    assert "# not a heading" in chunks[0].text
    assert chunks[0].text.endswith("x = 1\n```")  # closed, so the chunk stays valid Markdown


@pytest.mark.parametrize(("max_words", "overlap"), [(4, 0), (100, 100), (100, -1)])
def test_bad_parameters(max_words: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk_document(_doc("text"), max_words=max_words, overlap_words=overlap)


def test_split_pieces_of_unclosed_long_fence_are_closed() -> None:
    lines = "\n".join(f"y{i} = f({i}) + g({i})" for i in range(60))
    doc = _doc(f"## A\n\n~~~~python\n{lines}\n")
    chunks = chunk_document(doc, max_words=60, overlap_words=0)
    assert len(chunks) > 1
    for chunk in chunks:
        body = _split(chunk)[1]
        assert body.startswith("~~~~python\n") and body.endswith("\n~~~~")


# -- argument entries ------------------------------------------------------------------------


def test_each_argument_entry_is_also_a_chunk_of_its_own() -> None:
    doc = early_stopping()
    chunks = chunk_document(doc)
    prefix = f"{doc.title} > Args > "
    entries = {c.section.removeprefix(prefix): c for c in chunks if c.section.startswith(prefix)}
    assert {"monitor", "patience", "restore_best_weights", "start_from_epoch"} <= set(entries)
    header, body = _split(entries["restore_best_weights"])
    assert header == f"{prefix}restore_best_weights"
    # The whole entry, indented as in the docstring (the excerpt reads it as an entry), and
    # nothing of the next one.
    assert body.startswith("    restore_best_weights: Whether to restore model weights")
    assert body.rstrip().endswith("Defaults to `False`.")
    assert "start_from_epoch" not in body
    # The section's windows are still there, whole, before the entries.
    windows = [c for c in chunks if c.section == f"{doc.title} > Args"]
    assert windows and all(w.ordinal < entries["monitor"].ordinal for w in windows)
    assert "restore_best_weights: Whether" in " ".join(w.text for w in windows)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_entries_keep_deeper_lines_after_a_blank_and_stop_at_the_next_entry() -> None:
    text = (
        "## Args\n\n"
        "    monitor: Quantity to be monitored. Some notes on it:\n\n"
        "        * a bulleted line about the monitor, indented deeper\n"
        "    verbose: Verbosity mode, 0 or 1 (silent).\n"
        "    x: Unused.\n"
        "Not indented: prose after the list ends the last entry here.\n"
    )
    chunks = chunk_document(_doc(text, title="keras.callbacks.Thing", doc_id="keras.Thing"))
    by_name = {
        c.section.rsplit(" > ", 1)[-1]: _split(c)[1] for c in chunks if c.section.count(" > ") == 2
    }
    # "x: Unused." says too little to be searched for on its own.
    assert set(by_name) == {"monitor", "verbose"}
    assert by_name["monitor"] == (
        "    monitor: Quantity to be monitored. Some notes on it:\n\n"
        "        * a bulleted line about the monitor, indented deeper"
    )
    assert by_name["verbose"] == "    verbose: Verbosity mode, 0 or 1 (silent)."


@pytest.mark.parametrize("section", ["Returns", "Raises", "Example"])
def test_only_argument_sections_give_entry_chunks(section: str) -> None:
    text = f"## {section}\n\n    value: A tensor of the same shape as the input, always.\n"
    chunks = chunk_document(_doc(text, title="keras.ops.thing", doc_id="keras.ops.thing"))
    assert [c.section for c in chunks] == [f"keras.ops.thing > {section}"]


def test_a_long_entry_is_cut_at_a_line_within_the_budget() -> None:
    lines = [f"        line {i} of the description, six words" for i in range(40)]
    text = "## Call arguments\n\n    inputs: The input tensor.\n" + "\n".join(lines) + "\n"
    chunks = chunk_document(_doc(text, title="keras.layers.L", doc_id="keras.layers.L"))
    [entry] = [c for c in chunks if c.section == "keras.layers.L > Call arguments > inputs"]
    body = _split(entry)[1]
    assert len(_words(body)) <= 160 and body.endswith("six words")
    assert body.startswith("    inputs: The input tensor.\n        line 0 ")


def test_an_entry_cut_inside_its_code_example_ends_before_the_example() -> None:
    code = "\n".join(f"        x{i} = keras.ops.ones(({i}, 2))  # line {i}" for i in range(60))
    text = (
        "## Args\n\n    fn: A callable applied to each batch, for example:\n"
        f"        ```python\n{code}\n        ```\n"
    )
    chunks = chunk_document(_doc(text, title="keras.T", doc_id="keras.T"))
    [entry] = [c for c in chunks if c.section == "keras.T > Args > fn"]
    assert _split(entry)[1] == "    fn: A callable applied to each batch, for example:"
