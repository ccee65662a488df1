"""A real API page for tests: a symbol of the installed keras, rendered as the index's API
source renders it (its docstring as Markdown)."""

from __future__ import annotations

from bot.corpus.documents import Document
from index_builder.sources.python_api import docstring_to_markdown, find_package_dir, scan_package


def installed_api_document(name: str, subpackage: str, url: str) -> Document:
    """The Document of ``name`` (e.g. ``keras.callbacks.EarlyStopping``), found by scanning
    ``keras/src/<subpackage>`` of the installed keras."""
    [symbol] = [
        s for s in scan_package(find_package_dir("keras") / "src" / subpackage) if s.name == name
    ]
    return Document(
        doc_id=name,
        title=name,
        url=url,
        source="test",
        source_version="0",
        text=docstring_to_markdown(symbol.docstring),
        kind="api",
    )


def early_stopping() -> Document:
    """``keras.callbacks.EarlyStopping``: a page whose argument list spans several chunks."""
    return installed_api_document(
        "keras.callbacks.EarlyStopping",
        "callbacks",
        "https://keras.io/api/callbacks/early_stopping/",
    )
