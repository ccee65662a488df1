"""People's text as HTML on the dashboard: escaped whole, with bare http(s) URLs as links and,
for excerpts of past answers, fenced code blocks kept as code.

Everything here builds its HTML from escaped pieces only (``markupsafe.escape``), so no text
a person wrote can become markup; the only tags made are ``<a>``, ``<pre>``, ``<code>`` and
``<p>``, and a link's target is always the http(s) URL it shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markupsafe import Markup, escape

# A URL starts at a word boundary (not inside "xhttp://" or another URL's path), has a host,
# and runs to whitespace or a character that cannot be in a bare URL in running text.
_URL = re.compile(r"(?<![\w/.@-])https?://[^\s<>\"'`\\]+", re.I)
# Punctuation that ends a sentence rather than the URL ("see https://keras.io.").
_TRAILING = ".,;:!?*_~"
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.M | re.S)


def _unopened(url: str, close: str, open_: str) -> bool:
    return url.endswith(close) and url.count(close) > url.count(open_)


def _trim(url: str) -> str:
    """Drop sentence punctuation, and closing brackets the URL did not open."""
    while url and (url[-1] in _TRAILING or _unopened(url, ")", "(") or _unopened(url, "]", "[")):
        url = url[:-1]
    return url


def _has_host(url: str) -> bool:
    rest = url.split("://", 1)[1]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return any(c.isalnum() for c in host)


def linkify(text: str) -> Markup:
    """``text`` escaped, its bare http(s) URLs made links (``rel="nofollow noopener"``)."""
    out: list[str] = []
    pos = 0
    for m in _URL.finditer(text):
        url = _trim(m.group(0))
        if not _has_host(url):
            continue
        out.append(escape(text[pos : m.start()]))
        href = escape(url)
        out.append(f'<a href="{href}" rel="nofollow noopener">{href}</a>')
        pos = m.start() + len(url)
    out.append(escape(text[pos:]))
    return Markup("".join(out))


@dataclass(frozen=True)
class Block:
    code: bool
    text: str


def blocks(text: str) -> list[Block]:
    """Prose and fenced code blocks (``` or ~~~), in order; an unclosed fence runs to the end."""
    found: list[Block] = []
    pos = 0
    for m in _FENCE.finditer(text):
        if prose := text[pos : m.start()].strip():
            found.append(Block(False, prose))
        found.append(Block(True, m.group(2).rstrip("\n")))
        pos = m.end()
    if prose := text[pos:].strip():
        found.append(Block(False, prose))
    return found


def _cut(text: str, budget: int, *, code: bool) -> str:
    """At most ``budget`` characters: whole lines of code, whole words of prose, then "…"."""
    if len(text) <= budget:
        return text
    if code:
        lines: list[str] = []
        for line in text.splitlines():
            if sum(len(x) + 1 for x in lines) + len(line) > budget:
                break
            lines.append(line)
        return "\n".join([*lines, "…"])
    return text[:budget].rsplit(" ", 1)[0].rstrip() + "…"


def excerpt_html(text: str, limit: int = 600) -> Markup:
    """The start of a past answer, about ``limit`` characters: prose as paragraphs (escaped,
    URLs linked), code blocks as ``<pre><code>`` (escaped), cut at a line or a word."""
    out: list[str] = []
    left = limit
    for block in blocks(text):
        if left <= 0:
            out.append('<p class="muted">…</p>')
            break
        part = _cut(block.text, left, code=block.code)
        left -= len(block.text)
        if block.code:
            out.append(f"<pre><code>{escape(part)}</code></pre>")
        else:
            out.append(f"<p>{linkify(part)}</p>")
    return Markup("".join(out))
