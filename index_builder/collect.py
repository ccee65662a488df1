"""sources → documents: everything one build indexes, gathered from the configured sources.

The installed keras package's public API (linked to keras.io pages through the site map), the
keras-io guides and examples, stub pages for the site map's symbols no source documented, and
the room's past answers from the database. Ids are unique: the first source wins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.corpus.documents import Document, content_hash
from bot.corpus.past_answers import iter_past_answer_documents
from bot.errors import BuildError
from bot.settings import Settings
from bot.store.database import Database
from index_builder.sources.keras_io import (
    docs_version,
    iter_keras_io_documents,
    iter_site_map_symbol_documents,
    links_outside,
)
from index_builder.sources.python_api import (
    find_package_dir,
    iter_api_documents,
    package_version,
)
from index_builder.sources.site_map import SiteMap, find_site_map

log = logging.getLogger(__name__)


def collect_documents(settings: Settings) -> tuple[list[Document], dict[str, dict[str, Any]]]:
    """All documents from the configured sources, ids unique (first source wins)."""
    site_map, site_map_origin = _load_site_map(settings)
    collected = _Collected()
    for name, version, docs in _source_batches(settings, site_map):
        collected.add_batch(name, version, docs)
    if settings.docs_dir is not None:
        _note_links_outside(settings.docs_dir, collected.sources)
    if site_map is not None:
        _add_site_map_stubs(collected, site_map, site_map_origin, settings.docs_dir)
    if settings.include_past_answers:
        _add_past_answers(collected, settings)
    if not collected.documents:
        raise BuildError(
            "no documents: enable the keras API source or pass --docs-dir with a keras-io checkout"
        )
    return collected.documents, collected.sources


@dataclass
class _Collected:
    """What ``collect_documents`` has gathered so far, across its sources."""

    documents: list[Document] = field(default_factory=list)
    # Ids of the sources' documents: a later duplicate is dropped (first source wins).
    seen: set[str] = field(default_factory=set)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Names (ids and aliases) of the API documents: the site map adds no stub for them.
    known_symbols: set[str] = field(default_factory=set)

    def add_batch(self, name: str, version: str, docs: Iterator[Document]) -> None:
        count = 0
        for doc in docs:
            if doc.doc_id in self.seen:
                log.warning("duplicate document id %s from %s: kept the first", doc.doc_id, name)
                continue
            self.seen.add(doc.doc_id)
            self.documents.append(doc)
            count += 1
            if doc.kind == "api":
                self.known_symbols.update((doc.doc_id, *doc.aliases))
        self.sources[name] = {"version": version, "documents": count}


def _load_site_map(settings: Settings) -> tuple[SiteMap | None, str]:
    """The site map (from ``--site-map`` or found in the docs folder) and where it came from."""
    try:
        if settings.site_map is not None:
            return SiteMap.load(settings.site_map), str(settings.site_map)
        if settings.docs_dir is not None and settings.docs_dir.is_dir():
            # An export's site_map.json, or a git checkout's scripts/*_master.py.
            return find_site_map(settings.docs_dir) or (None, "")
    except (OSError, ValueError) as exc:
        where = settings.site_map or settings.docs_dir
        raise BuildError(f"cannot read the site map of {where}: {exc}") from exc
    return None, ""


def _source_batches(
    settings: Settings, site_map: SiteMap | None
) -> list[tuple[str, str, Iterator[Document]]]:
    """(source name, source version, lazy documents) for each configured source, in order."""
    batches: list[tuple[str, str, Iterator[Document]]] = []
    if settings.include_keras_api:
        batches.append(_api_batch(settings.api_package, site_map))
    if settings.docs_dir is not None:
        if not settings.docs_dir.is_dir():
            raise BuildError(f"docs dir {settings.docs_dir} is not a folder")
        batches.append(
            (
                "keras-io",
                docs_version(settings.docs_dir),
                iter_keras_io_documents(settings.docs_dir, site_map=site_map),
            )
        )
    return batches


def _api_batch(pkg: str, site_map: SiteMap | None) -> tuple[str, str, Iterator[Document]]:
    """The Python package's API documents, linked to their keras.io pages via the site map."""

    def url_for(symbol: Any) -> str | None:
        if site_map is None:
            return None
        for name in (symbol.name, *symbol.aliases):
            url = site_map.symbol_url(name)
            if url:
                return url
        return None

    try:
        # Located now, not when the lazy document iterator first runs: a missing package
        # is an operator's mistake and must end in one line, not a traceback mid-build.
        package_dir = find_package_dir(pkg)
    except LookupError as exc:
        raise BuildError(
            f"cannot index the {pkg!r} package: {exc}; install it (the `keras` extra: "
            "pip install 'keras-supportbot[keras]'), name another with "
            "SUPPORTBOT_API_PACKAGE, or build without it (--no-keras)"
        ) from None
    return (
        f"python-api:{pkg}",
        package_version(pkg),
        iter_api_documents(
            pkg,
            package_dir=package_dir,
            preferred_names=site_map.symbols if site_map else (),
            url_for=url_for,
        ),
    )


def _note_links_outside(docs_dir: Path, sources: dict[str, dict[str, Any]]) -> None:
    """Warn about (and record in the keras-io source) links that leave the docs folder."""
    outside = links_outside(docs_dir)
    if outside:
        log.warning(
            "skipped %d link(s) resolving outside the docs folder %s: %s",
            len(outside),
            docs_dir,
            ", ".join(outside),
        )
        sources["keras-io"]["skipped_outside_docs"] = outside


def _add_site_map_stubs(
    collected: _Collected, site_map: SiteMap, site_map_origin: str, docs_dir: Path | None
) -> None:
    """Stub documents for the site map's symbols that no source documented."""
    stubs = [
        d
        for d in iter_site_map_symbol_documents(
            site_map,
            known_symbols=collected.known_symbols,
            version=docs_version(docs_dir) if docs_dir else "unknown",
        )
        if d.doc_id not in collected.seen
    ]
    collected.documents.extend(stubs)
    collected.sources["site-map"] = {"version": site_map_origin, "documents": len(stubs)}


def _add_past_answers(collected: _Collected, settings: Settings) -> None:
    """The database's past answers; no "past-answers" source when there are none."""
    past = [d for d in _past_answer_documents(settings) if d.doc_id not in collected.seen]
    if past:
        collected.documents.extend(past)
        collected.sources["past-answers"] = {
            "version": content_hash(*(d.content_hash for d in past))[:12],
            "documents": len(past),
        }


def _past_answer_documents(settings: Settings) -> list[Document]:
    """The room's answered threads and imported archives, from the database."""
    from bot.store.past_answers import PastAnswerStore

    db = Database(settings.resolved_database_url)
    try:
        db.create_schema()  # a first build on a fresh data dir has no tables yet
        return list(iter_past_answer_documents(PastAnswerStore(db).list_all()))
    finally:
        db.close()
