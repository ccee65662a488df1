"""compose_reply / best_excerpt / escaping, on hand-made search results."""

from __future__ import annotations

import html as htmllib
import json
import re
from dataclasses import MISSING, fields
from typing import Any

import pytest

from bot.answering.render import markdown_to_html
from bot.answering.reply import SuggestedReply, best_excerpt, choose_sources, compose_reply
from bot.markdown_escape import escape_markdown, inline_markdown
from bot.retrieval.search import Hit, SearchResult

# A Markdown link whose text may contain backslash-escaped characters.
LINK = re.compile(r"(?<!\\)\[((?:\\.|[^\]\\])*)\]\(([^)\s]*)\)")


def hit(
    doc_id: str, score: float, *, title: str | None = None, excerpt: str = "", **extra: Any
) -> Hit:
    # Fields this test does not know about yet: None unless they have their own default.
    values: dict[str, Any] = {
        f.name: None for f in fields(Hit) if f.default is MISSING and f.default_factory is MISSING
    }
    values.update(
        doc_id=doc_id,
        title=title if title is not None else f"Title of {doc_id}",
        url=f"https://keras.io/{doc_id}/",
        kind="page",
        score=score,
        section="Section",
        excerpt=excerpt,
    )
    values.update(extra)
    return Hit(**values)


def result(
    hits: list[Hit], confidence: float, query: str = "how do I stop training early?"
) -> SearchResult:
    return SearchResult(query=query, mode="hybrid", hits=hits, confidence=confidence, symbols=[])


def unescaped(text: str, char: str) -> list[int]:
    """Positions of ``char`` in ``text`` not preceded by an odd number of backslashes."""
    out = []
    for i, c in enumerate(text):
        if c != char:
            continue
        slashes = len(text[:i]) - len(text[:i].rstrip("\\"))
        if slashes % 2 == 0:
            out.append(i)
    return out


# --- lead sentence and confidence ------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "confident"), [(0.9, True), (0.5, True), (0.49, False), (0.0, False)]
)
def test_lead_depends_on_confidence_vs_threshold(confidence: float, confident: bool) -> None:
    reply = compose_reply(
        result([hit("guides/a", 0.03, title="Callbacks")], confidence), threshold=0.5
    )
    lead = reply.markdown.splitlines()[0]
    assert reply.would_reply is confident
    assert reply.confidence == confidence
    assert reply.threshold == 0.5
    if confident:
        assert lead == "This looks covered by **Callbacks**:"
    else:
        assert lead.startswith("I'm not sure the docs answer this")
    assert reply.markdown.splitlines()[-1] == f"Confidence: {confidence:.0%}"


def test_a_question_the_docs_ask_is_named_in_the_lead() -> None:
    faq = hit("getting_started/faq", 0.03, title="Keras FAQ")
    asked = "How can I interrupt training when the validation loss isn't *decreasing*?"
    matched = SearchResult(
        query="how do I stop training early?",
        mode="hybrid",
        hits=[faq, hit("guides/a", 0.04)],
        confidence=0.87,
        symbols=[],
        matched_question=asked,
    )
    lead = compose_reply(matched, threshold=0.5).markdown.splitlines()[0]
    assert lead == (
        "This looks covered by **Keras FAQ** (“How can I interrupt training when the validation "
        "loss isn't \\*decreasing\\*?”):"
    )
    # Unsure (an operator's threshold over the match) or a past thread first: the usual lead.
    assert compose_reply(matched, threshold=0.9).markdown.startswith("I'm not sure")
    thread = hit("thread-1", 0.05, title="Stop early?", kind="thread")
    first_thread = compose_reply(
        SearchResult(
            query=matched.query,
            mode="hybrid",
            hits=[faq, thread],
            confidence=0.87,
            symbols=[],
            matched_question=asked,
        ),
        threshold=0.5,
    )
    assert first_thread.markdown.startswith("This was answered here before:")


def test_empty_hit_list() -> None:
    reply = compose_reply(result([], 0.99), threshold=0.1)
    assert reply.sources == []
    assert reply.would_reply is False
    assert reply.markdown == (
        "I couldn't find anything in the docs about this; a maintainer will take a look."
    )
    assert "Confidence" not in reply.markdown
    assert choose_sources([], 3) == []


# --- sources ---------------------------------------------------------------------------------


def test_at_most_max_sources() -> None:
    hits = [hit(f"d{i}", 1.0 - i * 0.05) for i in range(6)]
    for max_sources, expected in ((1, 1), (2, 2), (3, 3), (10, 6)):
        reply = compose_reply(result(hits, 0.9), threshold=0.5, max_sources=max_sources)
        assert [s.doc_id for s in reply.sources] == [f"d{i}" for i in range(expected)]
    assert len(compose_reply(result(hits, 0.9), threshold=0.5).sources) == 3


def test_secondary_sources_below_half_the_top_score_are_dropped() -> None:
    hits = [hit("top", 0.04), hit("weak", 0.0199), hit("half", 0.02), hit("fourth", 0.039)]
    reply = compose_reply(result(hits, 0.9), threshold=0.5)
    # Only the first three hits are candidates; "weak" is under half of the top score.
    assert [s.doc_id for s in reply.sources] == ["top", "half"]
    numbered = [line for line in reply.markdown.splitlines() if re.match(r"\d+\. ", line)]
    assert [line.split(".")[0] for line in numbered] == ["1", "2"]


def test_top_source_kept_whatever_its_score() -> None:
    reply = compose_reply(result([hit("only", 0.0), hit("next", 0.0)], 0.1), threshold=0.5)
    assert [s.doc_id for s in reply.sources] == ["only", "next"]


def test_links_are_markdown_title_url() -> None:
    hits = [hit("guides/a", 0.9, title="Guide A"), hit("guides/b", 0.8, title="Guide B")]
    reply = compose_reply(result(hits, 0.9), threshold=0.5)
    lines = reply.markdown.splitlines()
    assert lines[2] == "1. [Guide A](https://keras.io/guides/a/)"
    assert lines[3] == "2. [Guide B](https://keras.io/guides/b/)"
    assert [m.groups() for m in LINK.finditer(reply.markdown)] == [
        ("Guide A", "https://keras.io/guides/a/"),
        ("Guide B", "https://keras.io/guides/b/"),
    ]


def test_source_fields_come_from_the_hit() -> None:
    chunk = (
        "Callbacks > EarlyStopping\n\nStop training when a monitored metric has stopped improving."
    )
    h = hit("keras.callbacks.EarlyStopping", 0.5, title="EarlyStopping", excerpt=chunk)
    reply = compose_reply(result([h], 0.9), threshold=0.5, index_version="v7")
    (source,) = reply.sources
    assert source.doc_id == h.doc_id
    assert source.url == h.url
    assert source.section == "Section"
    assert source.score == 0.5
    assert source.excerpt == "Stop training when a monitored metric has stopped improving."
    assert reply.index_version == "v7"
    assert reply.question == "how do I stop training early?"
    assert reply.markdown.splitlines()[2] == (
        "1. [EarlyStopping](https://keras.io/keras.callbacks.EarlyStopping/) — "
        "Stop training when a monitored metric has stopped improving."
    )


# --- escaping --------------------------------------------------------------------------------

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "[link](javascript:alert(1))",
    "`rm -rf /` and ```fences```",
    "x](javascript:alert(1)) [y",
    "**bold** _em_ # heading | pipe \\",
    "<script>alert('x')</script>",
    "![img](https://tracker.example/p.png)",
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_user_controlled_title_and_excerpt_are_escaped(payload: str) -> None:
    chunk = f"Header line\n\nThis sentence talks about stopping training early {payload} indeed."
    hits = [
        hit("guides/a", 0.9, title=f"Title {payload}", excerpt=chunk),
        hit("guides/b", 0.8, title=payload, excerpt=chunk),
    ]
    for confidence in (0.9, 0.1):
        md = compose_reply(result(hits, confidence), threshold=0.5).markdown
        for char in "<[]":
            bad = [i for i in unescaped(md, char) if char not in "[]" or not _is_our_link(md, i)]
            assert bad == [], (char, md)
        assert "javascript:" not in [m.group(2) for m in LINK.finditer(md)]
        assert [m.group(2) for m in LINK.finditer(md)] == [
            "https://keras.io/guides/a/",
            "https://keras.io/guides/b/",
        ]
        # Rendered, only our markup and our links are there, and the text reads as written:
        # no escaping backslash shows (code spans from the text may drop their backticks).
        html = markdown_to_html(md)
        assert set(re.findall(r"</?([a-z0-9]+)", html)) <= {"p", "ol", "li", "a", "strong", "code"}
        assert re.findall(r'href="([^"]*)"', html) == [
            "https://keras.io/guides/a/",
            "https://keras.io/guides/b/",
        ]
        shown = visible_text(html).replace("`", "")
        if "\\" not in payload:
            assert "\\" not in shown
        assert best_excerpt(chunk, "stopping training").replace("`", "") in shown
        assert f"Title {payload.replace('`', '')}" in shown


def visible_text(html: str) -> str:
    """What a reader sees of rendered HTML: tags gone, entities decoded."""
    return htmllib.unescape(re.sub(r"<[^>]*>", "", html))


def _is_our_link(md: str, i: int) -> bool:
    return any(m.start() == i or m.start() + 1 + len(m.group(1)) == i for m in LINK.finditer(md))


def test_code_only_chunk_falls_back_to_the_document_intro() -> None:
    chunk = "Model.fit > Example\n\n```python\nmodel.fit(x, y, epochs=10)\n```"
    intro = "Model.fit\n\nTrains the model for a fixed number of epochs on a dataset."
    reply = compose_reply(
        result([hit("keras.Model.fit", 1.0, excerpt=chunk, intro=intro)], 0.9), threshold=0.5
    )
    assert reply.sources[0].excerpt == "Trains the model for a fixed number of epochs on a dataset."
    # Without an intro the source simply has no excerpt.
    reply = compose_reply(result([hit("keras.Model.fit", 1.0, excerpt=chunk)], 0.9), threshold=0.5)
    assert reply.sources[0].excerpt == ""
    assert (
        reply.markdown.splitlines()[2]
        == "1. [Title of keras.Model.fit](https://keras.io/keras.Model.fit/)"
    )


def test_markdown_links_in_excerpts_keep_only_their_text() -> None:
    chunk = "H\n\nSee [the callbacks guide](https://keras.io/guides/) for stopping training early."
    reply = compose_reply(result([hit("a", 1.0, excerpt=chunk)], 0.9), threshold=0.5)
    assert reply.sources[0].excerpt == "See the callbacks guide for stopping training early."
    hostile = "H\n\nSee [this](javascript:alert(1)) for stopping training early."
    reply = compose_reply(result([hit("a", 1.0, excerpt=hostile)], 0.9), threshold=0.5)
    assert "javascript" not in reply.markdown


def test_markdown_link_with_parentheses_in_url_keeps_only_its_text() -> None:
    chunk = (
        "H\n\nSee [dropout](https://en.wikipedia.org/wiki/Dilution_(neural_networks)) "
        "for regularising training."
    )
    assert best_excerpt(chunk, "dropout") == "See dropout for regularising training."


def test_escape_markdown() -> None:
    assert escape_markdown("a*b`d[e]f<g\\k") == "a\\*b\\`d\\[e\\]f\\<g\\\\k"
    # Only what could start markup mid-line: no backslash before harmless characters.
    assert escape_markdown("val_loss > 0.5 # of epochs | x") == "val_loss > 0.5 # of epochs | x"
    assert escape_markdown("_private and __init__ and trailing_") == (
        "\\_private and \\_\\_init\\_\\_ and trailing\\_"
    )
    assert escape_markdown("AT&amp;T &#60; &copy; & R&D") == "AT\\&amp;T \\&#60; \\&copy; & R&D"
    assert escape_markdown("plain text, 1.5 (ok)") == "plain text, 1.5 (ok)"
    assert escape_markdown("") == ""


@pytest.mark.parametrize(
    "text",
    [
        "Pass an `EarlyStopping` callback to `fit()`.",
        "val_loss *stars* _under_ <b>bold</b> [x](javascript:alert(1)) &lt; \\ end",
        "a lone ` backtick and ``double`` ones",
        "`<script>alert(1)</script>` and `[x](javascript:alert(1))` in code",
    ],
)
def test_escaped_text_renders_as_written(text: str) -> None:
    for fn in (escape_markdown, inline_markdown):
        html = markdown_to_html(f"1. [T](https://keras.io/) — {fn(text)}")
        assert re.findall(r'href="([^"]*)"', html) == ["https://keras.io/"]
        assert set(re.findall(r"</?([a-z0-9]+)", html)) <= {"ol", "li", "a", "code"}
        shown = visible_text(html).split(" — ", 1)[1].strip()
        assert shown.replace("`", "") == text.replace("`", "")


def test_inline_markdown_keeps_the_docs_code_spans() -> None:
    assert inline_markdown("Pass an `EarlyStopping` callback to `fit()`.") == (
        "Pass an `EarlyStopping` callback to `fit()`."
    )
    html = markdown_to_html(inline_markdown("use `a<b` and `[x](y)`, not *this*"))
    assert html == "<p>use <code>a&lt;b</code> and <code>[x](y)</code>, not *this*</p>"
    # A span left open (an excerpt cut short) is just an escaped backtick.
    assert inline_markdown("call `model.fit(") == "call \\`model.fit("
    assert inline_markdown("` `") == "\\` \\`"  # a blank span is not code


def test_title_with_newlines_stays_on_its_line() -> None:
    title = "Guide\n\n1. [Fake source](https://evil.example/)\n\n- more"
    reply = compose_reply(result([hit("a", 1.0, title=title)], 0.2), threshold=0.5)
    lines = reply.markdown.splitlines()
    assert len(lines) == 5  # lead, blank, one source, blank, confidence
    assert lines[2].startswith("1. [")


# --- best_excerpt ----------------------------------------------------------------------------

CHUNK = (
    "Callbacks > EarlyStopping\n\n"
    "Callbacks are objects that run at given stages of training. "
    "The EarlyStopping callback stops training when a monitored metric has stopped improving. "
    "Use the patience argument to wait a few epochs before stopping. "
    "See also ModelCheckpoint."
)


def test_best_excerpt_picks_the_sentence_sharing_most_terms() -> None:
    assert best_excerpt(CHUNK, "early stopping when metric stopped improving") == (
        "The EarlyStopping callback stops training when a monitored metric has stopped improving."
    )
    assert best_excerpt(CHUNK, "how many epochs of patience?") == (
        "Use the patience argument to wait a few epochs before stopping."
    )


def test_best_excerpt_ties_go_to_the_first_sentence() -> None:
    assert best_excerpt(CHUNK, "unrelated words entirely") == (
        "Callbacks are objects that run at given stages of training."
    )


def test_best_excerpt_skips_header_line_and_code() -> None:
    chunk = (
        "Page > Section\n\n"
        "```python\nmodel.save('x.keras')  # saving saving saving\n```\n"
        "Saving writes the whole model to a zip archive with its weights."
    )
    assert best_excerpt(chunk, "saving") == (
        "Saving writes the whole model to a zip archive with its weights."
    )
    assert "Page" not in best_excerpt(chunk, "page section")
    assert best_excerpt("H\n\n## Saving models to disk", "x") == "Saving models to disk"


def test_best_excerpt_of_a_one_line_chunk_uses_the_line() -> None:
    assert best_excerpt("just one line of text here", "text") == "just one line of text here"


@pytest.mark.parametrize(
    "chunk", ["", "Header only\n", "Header\n\n```\ncode only\n```", "H\n\n   "]
)
def test_best_excerpt_empty_body(chunk: str) -> None:
    assert best_excerpt(chunk, "anything") == ""


@pytest.mark.parametrize("limit", [200, 50, 20])
def test_best_excerpt_truncates(limit: int) -> None:
    sentence = "Stopping " + " ".join(f"word{i}" for i in range(200)) + "."
    got = best_excerpt(f"H\n\n{sentence}", "stopping", limit=limit)
    assert len(got) <= limit
    assert got.endswith("…")
    assert sentence.startswith(got[:-1])
    assert got[:-1].split(" ")[-1] in sentence.split(" ")  # cut at a word boundary


def test_best_excerpt_default_limit_is_200() -> None:
    long_sentence = "Training " + "x" * 500
    got = best_excerpt(f"H\n\n{long_sentence} y.", "training")
    assert len(got) <= 200
    assert got.endswith("…")


def test_excerpt_in_reply_is_one_short_line() -> None:
    chunk = "H\n\n" + "Stopping early\nis done   by callbacks " * 30 + "."
    reply = compose_reply(result([hit("a", 1.0, excerpt=chunk)], 0.9), threshold=0.5)
    assert "\n" not in reply.sources[0].excerpt
    assert len(reply.sources[0].excerpt) <= 200


# --- JSON ------------------------------------------------------------------------------------


def test_to_json_keys_and_rounding() -> None:
    hits = [hit("a", 0.123456789, excerpt=CHUNK), hit("b", 0.1)]
    reply = compose_reply(result(hits, 0.876543), threshold=0.5, index_version="v3")
    data = reply.to_json()
    assert set(data) == {
        "question",
        "markdown",
        "confidence",
        "threshold",
        "would_reply",
        "sources",
        "index_version",
        "notes",
        "backend",
        "missing",
    }
    assert data["notes"] == [] and data["backend"] is None
    assert data["confidence"] == 0.8765
    assert data["would_reply"] is True
    assert data["index_version"] == "v3"
    assert [set(s) for s in data["sources"]] == [
        {"doc_id", "title", "url", "section", "excerpt", "score", "kind", "answered_by", "snippet"}
    ] * 2
    assert data["sources"][0]["score"] == 0.123457
    json.dumps(data)  # serialisable as is
    assert isinstance(reply, SuggestedReply)
    assert reply.sources[0].score == 0.123456789  # rounding only in the JSON


def test_to_json_of_empty_reply() -> None:
    data = compose_reply(result([], 0.0), threshold=0.5).to_json()
    assert data["sources"] == []
    assert data["would_reply"] is False
    assert data["index_version"] is None


# --- the code example ------------------------------------------------------------------------

ARGS_CHUNK = (
    "keras.callbacks.EarlyStopping > Args\n\n"
    "    monitor: Quantity to be monitored, such as `val_loss`.\n"
    "    patience: Epochs with no improvement after which training stops."
)
EXAMPLE_CHUNK = (
    "keras.callbacks.EarlyStopping > Example\n\n"
    "```python\n"
    ">>> stopper = keras.callbacks.EarlyStopping(monitor='val_loss', patience=3)\n"
    ">>> model.fit(x, y, validation_split=0.2, callbacks=[stopper])\n"
    "<History object>\n"
    "```"
)
STOP_QUESTION = "How do I stop training when the validation loss stops improving?"


def api_hit(**extra: Any) -> Hit:
    values: dict[str, Any] = dict(
        title="keras.callbacks.EarlyStopping", kind="api", excerpt=ARGS_CHUNK, intro=""
    )
    values.update(extra)
    return hit("keras.callbacks.EarlyStopping", 1.0, **values)


def pages(**texts: list[str]) -> Any:
    return lambda doc_id: texts.get(doc_id.replace(".", "_"), [])


def test_the_top_pages_code_example_goes_under_its_link() -> None:
    chunks = pages(keras_callbacks_EarlyStopping=[ARGS_CHUNK, EXAMPLE_CHUNK])
    hits = [api_hit(), hit("guides/b", 0.9, excerpt="H\n\nStopping training early is good.")]
    reply = compose_reply(result(hits, 0.9, STOP_QUESTION), threshold=0.5, chunks=chunks)
    code = (
        "stopper = keras.callbacks.EarlyStopping(monitor='val_loss', patience=3)\n"
        "model.fit(x, y, validation_split=0.2, callbacks=[stopper])"
    )
    assert [s.snippet for s in reply.sources] == [code, ""]
    lines = reply.markdown.splitlines()
    assert lines[2].startswith("1. [keras.callbacks.EarlyStopping](")
    assert lines[3:7] == ["   ```python", *("   " + ln for ln in code.splitlines()), "   ```"]
    assert lines[7].startswith("2. [Title of guides/b](")
    html = markdown_to_html(reply.markdown)
    assert html.count("<ol>") == 1  # the block sits inside the first item: one list
    assert '<pre><code class="language-python">stopper = keras.callbacks.EarlyStopping(' in html
    assert "&lt;History object&gt;" not in html  # doctest output dropped
    assert "\\" not in html
    assert reply.to_json()["sources"][0]["snippet"] == code


def test_without_the_pages_chunks_only_the_matched_chunk_and_intro_are_searched() -> None:
    reply = compose_reply(result([api_hit()], 0.9, STOP_QUESTION), threshold=0.5)
    assert reply.sources[0].snippet == "" and "```" not in reply.markdown
    reply = compose_reply(result([api_hit(intro=EXAMPLE_CHUNK)], 0.9, STOP_QUESTION), threshold=0.5)
    assert reply.sources[0].snippet.startswith("stopper = ")


def test_no_code_example_when_none_fits_or_when_turned_off() -> None:
    chunks = pages(keras_callbacks_EarlyStopping=[EXAMPLE_CHUNK])
    unrelated = compose_reply(
        result([api_hit()], 0.9, "How do I sum a tensor along an axis?"),
        threshold=0.5,
        chunks=chunks,
    )
    assert unrelated.sources[0].snippet == ""
    off = compose_reply(
        result([api_hit()], 0.9, STOP_QUESTION), threshold=0.5, chunks=chunks, snippet=False
    )
    assert off.sources[0].snippet == "" and "```" not in off.markdown


def test_a_past_answer_leads_and_the_code_comes_from_the_first_docs_page() -> None:
    thread = hit(
        "thread:1",
        0.95,
        kind="thread",
        excerpt="H\n\nstop early?",
        meta=(("answer", "Use `EarlyStopping` with patience."), ("answered_by", "maria")),
    )
    chunks = pages(keras_callbacks_EarlyStopping=[EXAMPLE_CHUNK])
    reply = compose_reply(
        result([thread, api_hit()], 0.9, STOP_QUESTION), threshold=0.5, chunks=chunks
    )
    assert [s.kind for s in reply.sources] == ["thread", "api"]
    assert [bool(s.snippet) for s in reply.sources] == [False, True]
    lines = reply.markdown.splitlines()
    assert lines[2].startswith("1. ") and "answered by maria: Use `EarlyStopping`" in lines[2]
    assert lines[3].startswith("2. [keras.callbacks.EarlyStopping](")
    assert lines[4] == "   ```python"


def test_hostile_code_in_a_page_stays_inside_its_block() -> None:
    evil = (
        "Page > Example\n\n"
        "````python\n"
        "stopper = EarlyStopping(monitor='val_loss')  # stop training\n"
        "note = '''\n```\n</code></pre><script>alert(1)</script> [x](javascript:alert(1))\n'''\n"
        "````"
    )
    reply = compose_reply(
        result([hit("page", 1.0, excerpt=evil)], 0.9, STOP_QUESTION), threshold=0.5
    )
    assert "</code></pre><script>" in reply.sources[0].snippet
    html = markdown_to_html(reply.markdown)
    assert "<script" not in html and "javascript:alert(1)</a>" not in html
    assert html.count("<pre>") == 1 and re.findall(r'href="([^"]*)"', html) == [
        "https://keras.io/page/"
    ]


def test_a_page_title_keeps_its_code_span_and_a_thread_title_is_escaped() -> None:
    hits = [hit("guides/custom", 0.9, title="Customizing what happens in `fit()`")]
    html = markdown_to_html(compose_reply(result(hits, 0.9), threshold=0.5).markdown)
    assert "<strong>Customizing what happens in <code>fit()</code></strong>" in html
    assert '">Customizing what happens in <code>fit()</code></a>' in html
    thread = hit("thread/1", 0.9, title="why does `fit()` hang?", kind="thread")
    md = compose_reply(result([thread], 0.9), threshold=0.5).markdown
    assert "why does \\`fit()\\` hang?" in md  # a person's words: shown exactly, not as code


# -- what an unsure reply asks for (bot.answering.missing_info) ------------------------------------

CRASH = (
    "My training crashes with TypeError: unsupported operand type(s) for +: 'int' and "
    "'NoneType' when I call model.fit"
)


def test_an_unsure_reply_asks_for_what_would_decide_it() -> None:
    reply = compose_reply(result([hit("guides/training", 0.4)], 0.3, CRASH), threshold=0.75)
    assert not reply.would_reply
    assert "traceback" in reply.missing and "version" in reply.missing
    ask = next(line for line in reply.markdown.splitlines() if line.startswith("To help, add:"))
    assert "the full traceback of the TypeError" in ask
    # The room answers the asker's reply in the thread once (tests/room/test_service_units.py).
    assert "Reply in this thread with it and I'll look again." in reply.markdown
    assert reply.to_json()["missing"] == reply.missing


def test_a_confident_reply_asks_for_nothing() -> None:
    reply = compose_reply(result([hit("guides/training", 0.9)], 0.9, CRASH), threshold=0.75)
    assert reply.would_reply
    assert reply.missing == []
    assert "To help, add:" not in reply.markdown


def test_a_complete_question_gets_no_ask_even_when_unsure() -> None:
    question = "How do I stop training when the validation loss stops improving?"
    reply = compose_reply(result([hit("guides/training", 0.4)], 0.3, question), threshold=0.75)
    assert not reply.would_reply
    assert reply.missing == []
    assert "To help, add:" not in reply.markdown


def test_a_code_block_the_text_does_not_show_silences_the_code_ask() -> None:
    question = "my model is not working, the accuracy stays at 0.5 whatever I do"
    bare = compose_reply(result([hit("guides/training", 0.4)], 0.3, question), threshold=0.75)
    with_code = compose_reply(
        result([hit("guides/training", 0.4)], 0.3, question), threshold=0.75, has_code=True
    )
    assert "code" in bare.missing
    assert "code" not in with_code.missing


def test_the_reply_shows_the_entry_of_the_argument_the_question_writes_as_code() -> None:
    """compose_reply hands each source's page to the excerpt: the asked-about argument's
    entry comes from another chunk than the one search matched (bot/answering/excerpts.py)."""
    call = "keras.layers.LSTM > Call arguments\n\n    inputs: A 3D tensor, with shape `(b, t, f)`."
    args = (
        "keras.layers.LSTM > Args\n\n    recurrent_dropout: Float between 0 and 1. Fraction of"
        " the units to drop\n        for the linear transformation of the recurrent state."
    )
    top = hit("keras.layers.LSTM", 1.0, kind="api", title="keras.layers.LSTM", excerpt=call)
    question = "Is LSTM(32, recurrent_dropout=0.2) slow?"
    reply = compose_reply(
        result([top], 0.2, query=question),
        threshold=0.5,
        chunks=lambda doc_id: [call, args] if doc_id == "keras.layers.LSTM" else [],
    )
    assert reply.sources[0].excerpt.startswith("`recurrent_dropout`: Float between 0 and 1.")
    assert "`recurrent_dropout`: Float between 0 and 1." in reply.markdown
    # Without the page, the matched chunk's own line.
    alone = compose_reply(result([top], 0.2, query=question), threshold=0.5)
    assert alone.sources[0].excerpt.startswith("`inputs`: A 3D tensor")


def test_a_sibling_page_with_the_same_line_points_at_it_instead_of_repeating_it() -> None:
    entry = "keras.utils.x_from_directory > Args > directory\n\n    directory: Where the data is."
    hits = [
        hit("keras.utils.image_dataset_from_directory", 1.0, kind="api", excerpt=entry),
        hit("api/data_loading", 0.9, excerpt="Data loading > Intro\n\nLoad files from disk."),
        hit("keras.utils.text_dataset_from_directory", 0.8, kind="api", excerpt=entry),
    ]
    reply = compose_reply(result(hits, 0.2, query="directory layout?"), threshold=0.5)
    items = [line for line in reply.markdown.splitlines() if line[:2] in {"1.", "2.", "3."}]
    assert items[0].endswith("— `directory`: Where the data is.")
    assert items[1].endswith("— Load files from disk.")
    # The page stays (it may be the one the asker needs); its line says where the text is.
    assert "text_dataset_from_directory" in items[2]
    assert items[2].endswith("— the same text as 1.")
    assert reply.markdown.count("Where the data is.") == 1
    # The structured reply keeps each source's own excerpt (the dashboard's try page).
    assert reply.sources[2].excerpt == reply.sources[0].excerpt
