"""Markdown → the HTML ``formatted_body`` Matrix clients show. Raw HTML is never passed on."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from markdown_it import MarkdownIt


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    # "html": False makes any HTML in the source literal text, escaped.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).disable("image")


def markdown_to_html(markdown: str) -> str:
    return _renderer().render(markdown).strip()


# Kept as they are: what URLs need (RFC 3986's reserved and unreserved characters, and "%" so
# an encoded URL is not encoded twice). Everything else, parentheses and brackets included, is
# percent-encoded: a URL from an index or a room cannot end the link or start another one.
_URL_SAFE = "!#$%&'*+,/:;=?@~-._"


def link_target(url: str) -> str:
    """``url`` made safe as the target of a Markdown link ``[text](target)``."""
    return quote(url, safe=_URL_SAFE)
