"""Markdown → the HTML ``formatted_body`` Matrix clients show (raw HTML is never passed on),
and → plain text for the terminal."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote

from markdown_it import MarkdownIt
from markdown_it.token import Token


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    # "html": False makes any HTML in the source literal text, escaped.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).disable("image")


def markdown_to_html(markdown: str) -> str:
    return _renderer().render(markdown).strip()


def markdown_to_text(markdown: str) -> str:
    """Markdown → plain text for a terminal: what a reader sees, with no Markdown escapes.

    Links read ``text (url)``, inline code keeps its backticks (the usual plain-text
    convention), code blocks are indented four spaces and never wrapped, so they paste as
    code. Parsed by the same renderer as :func:`markdown_to_html`, so both agree on the
    structure; raw HTML in the source stays literal text here too.
    """
    out: list[str] = []
    indents: list[str] = []  # continuation prefix of each open list item / quote
    counters: list[int | None] = []  # next number of each open list (None: bullets)
    marker: str | None = None  # the list marker the next line starts with

    def emit(line: str) -> None:
        nonlocal marker
        if not indents:
            out.append(line)
            return
        head = "".join(indents[:-1]) + (marker if marker is not None else indents[-1])
        marker = None
        out.append((head + line) if line else head.rstrip())

    for token in _renderer().parse(markdown):
        kind = token.type
        if kind in ("ordered_list_open", "bullet_list_open"):
            start = token.attrGet("start")
            counters.append(int(start or 1) if kind == "ordered_list_open" else None)
        elif kind in ("ordered_list_close", "bullet_list_close"):
            counters.pop()
            if not counters:
                out.append("")
        elif kind == "list_item_open":
            number = counters[-1]
            marker = "- " if number is None else f"{number}. "
            if number is not None:
                counters[-1] = number + 1
            indents.append(" " * len(marker))
        elif kind == "list_item_close":
            if marker is not None:  # an empty item still shows its marker
                emit("")
            indents.pop()
        elif kind == "blockquote_open":
            indents.append("> ")
        elif kind == "blockquote_close":
            indents.pop()
        elif kind == "inline":
            for line in _inline_text(token.children or []).split("\n"):
                emit(line)
        elif kind in ("fence", "code_block"):
            for line in token.content.rstrip("\n").split("\n"):
                emit(f"    {line}" if line.strip() else "")
            if not indents:
                out.append("")
        elif kind == "hr":
            emit("---")
            out.append("")
        elif kind in ("paragraph_close", "heading_close") and not token.hidden:
            out.append("")  # (hidden: the paragraphs of a tight list's items)
    text = "\n".join(line.rstrip() for line in out)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _inline_text(children: list[Token]) -> str:
    parts: list[str] = []
    href: list[str] = []  # targets of the open links
    start: list[int] = []  # where each open link's text starts in parts
    for child in children:
        kind = child.type
        if kind in ("text", "text_special", "html_inline"):
            parts.append(child.content)
        elif kind == "code_inline":
            parts.append(f"`{child.content}`")
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif kind == "link_open":
            href.append(str(child.attrGet("href") or ""))
            start.append(len(parts))
        elif kind == "link_close" and href:
            url, at = href.pop(), start.pop()
            if url and "".join(parts[at:]) != url:
                parts.append(f" ({url})")
    return "".join(parts)


# Kept as they are: what URLs need (RFC 3986's reserved and unreserved characters, and "%" so
# an encoded URL is not encoded twice). Everything else, parentheses and brackets included, is
# percent-encoded: a URL from an index or a room cannot end the link or start another one.
_URL_SAFE = "!#$%&'*+,/:;=?@~-._"


def link_target(url: str) -> str:
    """``url`` made safe as the target of a Markdown link ``[text](target)``."""
    return quote(url, safe=_URL_SAFE)
