"""bot.answering.render: Markdown to the HTML formatted_body; raw HTML never passes through."""

from __future__ import annotations

import re

import pytest

from bot.answering.render import markdown_to_html, markdown_to_text


def test_basic_markdown() -> None:
    html = markdown_to_html("This looks covered by **Model training**:\n\n1. one\n2. two")
    assert "<strong>Model training</strong>" in html
    assert "<ol>" in html and "<li>one</li>" in html
    assert html == html.strip()


def test_links_are_rendered() -> None:
    html = markdown_to_html("[fit](https://keras.io/api/models/model_training_apis/#fit-method)")
    assert html == (
        '<p><a href="https://keras.io/api/models/model_training_apis/#fit-method">fit</a></p>'
    )
    assert '<a href="https://keras.io">https://keras.io</a>' in markdown_to_html(
        "<https://keras.io>"
    )


def test_link_with_parentheses_in_url() -> None:
    html = markdown_to_html("[wiki](https://en.wikipedia.org/wiki/Adam_(optimizer))")
    assert 'href="https://en.wikipedia.org/wiki/Adam_(optimizer)"' in html


def test_bare_urls_are_not_linkified() -> None:
    assert "<a " not in markdown_to_html("see https://keras.io for docs")


def test_code_is_escaped() -> None:
    html = markdown_to_html("use `x < y && z`\n\n```python\nif a<b: print('<b>')\n```")
    assert "<code>x &lt; y &amp;&amp; z</code>" in html
    assert "&lt;b&gt;" in html
    assert "<b>" not in html


@pytest.mark.parametrize(
    "source",
    [
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        "hello <script>alert(1)</script> world",
        '<a href="javascript:alert(1)">click</a>',
        "<iframe src=https://evil.example></iframe>",
        "<div onclick=alert(1)>x</div>",
        "<!-- comment --><b>bold</b>",
        "<svg/onload=alert(1)>",
    ],
)
def test_raw_html_is_escaped(source: str) -> None:
    html = markdown_to_html(source)
    # The only tags left are the ones the Markdown renderer writes itself.
    tags = set(re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= {"p"}, html
    assert "&lt;" in html


@pytest.mark.parametrize(
    "source",
    [
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click](&#106;avascript:alert(1))",
        "[click](vbscript:msgbox(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "<javascript:alert(1)>",
        "[click][ref]\n\n[ref]: javascript:alert(1)",
    ],
)
def test_dangerous_links_are_not_links(source: str) -> None:
    html = markdown_to_html(source)
    assert "<a " not in html, html
    assert "href" not in html


@pytest.mark.parametrize(
    "source",
    [
        "![diagram](https://example.com/x.png)",
        "![x](javascript:alert(1))",
        '![t](https://example.com/track.gif "title")',
    ],
)
def test_images_are_disabled(source: str) -> None:
    html = markdown_to_html(source)
    assert "<img" not in html, html
    assert "javascript:" not in html or "href" not in html


def test_escaped_markdown_from_titles_stays_text() -> None:
    # compose_reply escapes titles with backslashes; they must render as the literal characters.
    assert markdown_to_html(r"\*\*not bold\*\* \<b\>") == "<p>**not bold** &lt;b&gt;</p>"


def test_empty_input() -> None:
    assert markdown_to_html("") == ""
    assert markdown_to_html("   \n\n") == ""


def test_fenced_python_renders_with_its_language_class() -> None:
    html = markdown_to_html("1. [a](https://keras.io/)\n   ```python\n   x = f(1)\n   ```")
    assert '<pre><code class="language-python">x = f(1)\n</code></pre>' in html
    assert html.count("<li>") == 1


REPLY = (
    "This looks covered by **keras.callbacks.EarlyStopping**:\n\n"
    "1. [keras.callbacks.EarlyStopping](https://keras.io/api/callbacks/early_stopping/) — "
    "Stop `training` when val_loss \\*x\\* \\<b> \\[a\\] \\\\ \\_x\n"
    "   ```python\n"
    "   stopper = keras.callbacks.EarlyStopping(monitor='val_loss', patience=3)\n"
    "\n"
    "   model.fit(x, y, callbacks=[stopper])  # a long comment that no terminal width may wrap\n"
    "   ```\n"
    "2. [Training](https://keras.io/guides/training/) — The `EarlyStopping` callback.\n\n"
    "Confidence: 72%"
)


def test_plain_text_reads_as_the_reply_without_markup() -> None:
    assert markdown_to_text(REPLY) == (
        "This looks covered by keras.callbacks.EarlyStopping:\n\n"
        "1. keras.callbacks.EarlyStopping (https://keras.io/api/callbacks/early_stopping/) — "
        "Stop `training` when val_loss *x* <b> [a] \\ _x\n"
        "       stopper = keras.callbacks.EarlyStopping(monitor='val_loss', patience=3)\n"
        "\n"
        "       model.fit(x, y, callbacks=[stopper])  # a long comment that no terminal width may "
        "wrap\n"
        "2. Training (https://keras.io/guides/training/) — The `EarlyStopping` callback.\n\n"
        "Confidence: 72%"
    )


def test_plain_text_of_other_markdown() -> None:
    assert markdown_to_text("") == ""
    assert markdown_to_text("<https://keras.io>") == "https://keras.io"
    assert markdown_to_text("<script>alert(1)</script> hi") == "<script>alert(1)</script> hi"
    assert markdown_to_text("- a\n- b\n\n```\ncode\n```\n\n> quoted\n\n---\n\n# Head") == (
        "- a\n- b\n\n    code\n\n> quoted\n\n---\n\nHead"
    )
    assert markdown_to_text("3. three\n4. four") == "3. three\n4. four"


HOSTILE_URL = "https://a/)[x](https://phish"


def test_a_hostile_source_url_stays_one_link() -> None:
    """A source URL that closes the link and opens another adds no second link."""
    from bot.answering.reply import compose_reply
    from tests.answering.test_answering import hit, result

    reply = compose_reply(result([hit("p", 1.0, url=HOSTILE_URL)], 0.9), threshold=0.5)
    html = markdown_to_html(reply.markdown)
    links = re.findall(r'<a href="([^"]*)"', html)
    assert links == ["https://a/%29%5Bx%5D%28https://phish"]
    assert 'href="https://phish' not in html


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://keras.io/api/layers/", "https://keras.io/api/layers/"),
        (
            "https://en.wikipedia.org/wiki/Adam_(optimizer)",
            "https://en.wikipedia.org/wiki/Adam_%28optimizer%29",
        ),
        ("https://a/x y<b>\\c`d", "https://a/x%20y%3Cb%3E%5Cc%60d"),
        ("https://a/%20already#frag?q=1&r=2", "https://a/%20already#frag?q=1&r=2"),
        ("https://a/\nline", "https://a/%0Aline"),
    ],
)
def test_link_targets_are_percent_encoded(url: str, target: str) -> None:
    from bot.answering.render import link_target

    assert link_target(url) == target
    html = markdown_to_html(f"[t]({link_target(url)})")
    assert html.count("<a ") == 1
