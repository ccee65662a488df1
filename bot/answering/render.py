"""Markdown → the HTML ``formatted_body`` Matrix clients show. Raw HTML is never passed on."""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    # "html": False makes any HTML in the source literal text, escaped.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).disable("image")


def markdown_to_html(markdown: str) -> str:
    return _renderer().render(markdown).strip()
