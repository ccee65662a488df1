"""The keras.io page tree (``site_map.json``): page paths, titles, breadcrumbs and API symbols.

``site_map.json`` is the keras-io repository's ``*_master.py`` dicts as data. Each node has a
``path`` fragment, a ``title``, optional ``children`` and, for API pages, ``generate``: the
public symbols documented on that page. A page's URL path is the concatenation of the
fragments from the root, e.g. ``api/`` + ``callbacks/`` + ``early_stopping``.

The file also carries ``KT_API_MASTER``, ``CV_GUIDES_MASTER``, ... which are already nested
inside ``API_MASTER`` / ``GUIDES_MASTER``; walking them as roots would invent wrong paths
(``keras_tuner/tuners`` instead of ``api/keras_tuner/tuners``), so only the three real roots
are walked.

A keras-io git checkout has no ``site_map.json``: :func:`find_site_map` then reads the same
dicts from its ``scripts/*_master.py`` (parsed as data, never run).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KERAS_IO = "https://keras.io"

#: The roots of the site; every other ``*_MASTER`` key is a subtree of one of these.
ROOT_KEYS = ("API_MASTER", "GUIDES_MASTER", "EXAMPLES_MASTER")

_NON_ALNUM = re.compile(r"[^a-z0-9]")


@dataclass(frozen=True)
class SitePage:
    """One page of keras.io as the site map describes it."""

    path: str  # "api/callbacks/early_stopping" (no leading/trailing slash)
    title: str
    breadcrumb: tuple[str, ...]  # titles of ancestors, root first
    symbols: tuple[str, ...]  # the page's own "generate" list, may be empty
    children: tuple[str, ...]  # child page paths, in site order


def symbol_anchor(symbol: str) -> str:
    """The keras.io heading anchor of a symbol's entry on its API page.

    keras.io renders "`EarlyStopping` class", "`fit` method" and "`save_model` function"
    headings and slugs them to lowercase alphanumerics plus the kind. A member of a
    capitalised parent (``keras.Model.fit``, ``keras_tuner.HyperParameters.Int``) is a
    method even when its own name is capitalised, so the parent is checked first.
    """
    parts = symbol.split(".")
    name = parts[-1]
    slug = _NON_ALNUM.sub("", name.lower())
    parent = parts[-2] if len(parts) > 1 else ""
    if parent[:1].isupper():
        kind = "method"
    elif name[:1].isupper():
        kind = "class"
    else:
        kind = "function"
    return f"{slug}-{kind}"


def _join(prefix: str, fragment: str) -> str:
    # Fragments normally end with "/" when they have children, but don't rely on it.
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix + fragment.lstrip("/")


def _dedup(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class SiteMap:
    """The keras.io page tree, keyed by page path."""

    def __init__(self, pages: Mapping[str, SitePage]) -> None:
        self.pages: dict[str, SitePage] = dict(pages)
        # First page (in site order) wins for a symbol listed on two pages, e.g.
        # keras.Model.get_config is on both the model-config page and the base-layer page.
        self._symbol_page: dict[str, str] = {}
        for page in self.pages.values():
            for symbol in page.symbols:
                self._symbol_page.setdefault(symbol, page.path)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> SiteMap:
        """Read ``site_map.json``; ``ValueError`` when it is not JSON or not a page tree."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a JSON object at the top level")
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SiteMap:
        """Build from the parsed JSON: a mapping of ``*_MASTER`` roots, or one root node."""
        if not isinstance(data, Mapping):
            raise ValueError("site map must be a mapping")
        if "path" in data:
            roots: list[tuple[str, Any]] = [("root", data)]
        else:
            roots = [(key, data[key]) for key in ROOT_KEYS if key in data]
            if not roots:
                raise ValueError(f"site map has none of the root keys {', '.join(ROOT_KEYS)}")

        titles: dict[str, str] = {}
        crumbs: dict[str, tuple[str, ...]] = {}
        symbols: dict[str, list[str]] = {}
        children: dict[str, list[str]] = {}

        def visit(node: Any, prefix: str, breadcrumb: tuple[str, ...], where: str) -> str:
            if not isinstance(node, Mapping):
                raise ValueError(f"{where}: a page node must be an object")
            frag, title = node.get("path"), node.get("title")
            if not isinstance(frag, str):
                raise ValueError(f"{where}: 'path' must be a string")
            if not isinstance(title, str):
                raise ValueError(f"{where}: 'title' must be a string")
            where = f"{where} > {title}"
            url_path = _join(prefix, frag)
            key = url_path.strip("/")
            generate = node.get("generate", [])
            if not isinstance(generate, list) or not all(isinstance(s, str) for s in generate):
                raise ValueError(f"{where}: 'generate' must be a list of strings")
            kids = node.get("children", [])
            if not isinstance(kids, list):
                raise ValueError(f"{where}: 'children' must be a list")
            # A path listed twice (the real map has two) is one page: merge, first title wins.
            titles.setdefault(key, title)
            crumbs.setdefault(key, breadcrumb)
            symbols.setdefault(key, []).extend(generate)
            child_paths = children.setdefault(key, [])
            for i, kid in enumerate(kids):
                child_paths.append(visit(kid, url_path, (*breadcrumb, title), f"{where}[{i}]"))
            return key

        for name, root in roots:
            visit(root, "", (), name)

        pages = {
            key: SitePage(
                path=key,
                title=titles[key],
                breadcrumb=crumbs[key],
                symbols=_dedup(symbols[key]),
                children=_dedup(children[key]),
            )
            for key in titles
        }
        return cls(pages)

    # -- queries ------------------------------------------------------------------------

    def get(self, path: str) -> SitePage | None:
        """The page at a URL path (slashes at either end are ignored)."""
        return self.pages.get(path.strip("/"))

    def page_for_symbol(self, symbol: str) -> SitePage | None:
        """The page whose ``generate`` list documents ``symbol``."""
        path = self._symbol_page.get(symbol)
        return self.pages[path] if path is not None else None

    def symbol_url(self, symbol: str) -> str | None:
        """Deep link to a symbol's entry, e.g. ``.../model_training_apis/#fit-method``."""
        page = self.page_for_symbol(symbol)
        if page is None:
            return None
        return f"{self.url_for_path(page.path)}#{symbol_anchor(symbol)}"

    def url_for_path(self, path: str) -> str:
        """``https://keras.io/<path>/`` (the site always uses a trailing slash)."""
        path = path.strip("/")
        return f"{KERAS_IO}/{path}/" if path else f"{KERAS_IO}/"

    def iter_subtree(self, path: str) -> Iterator[SitePage]:
        """The page at ``path`` and all its descendants, depth first in site order."""
        page = self.get(path)
        if page is None:
            return
        stack = [page]
        seen: set[str] = set()
        while stack:
            page = stack.pop()
            if page.path in seen:  # guard against a malformed map listing a page twice
                continue
            seen.add(page.path)
            yield page
            stack.extend(self.pages[c] for c in reversed(page.children) if c in self.pages)

    def subtree_symbols(self, path: str) -> tuple[str, ...]:
        """Symbols documented on a page and its descendants (what an overview page covers)."""
        return _dedup([s for page in self.iter_subtree(path) for s in page.symbols])

    @property
    def symbols(self) -> frozenset[str]:
        """Every symbol the site documents."""
        return frozenset(self._symbol_page)

    def __len__(self) -> int:
        return len(self.pages)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and path.strip("/") in self.pages


# -- a real keras-io checkout: the site map from scripts/*_master.py -------------------------

#: The file an export ships the site map in; a git checkout has the scripts instead.
SITE_MAP_FILE = "site_map.json"
SCRIPTS_GLOB = "scripts/*_master.py"


class _Unresolved(Exception):
    """An expression that is not plain data (a call, a comprehension, an unknown name)."""


def _literal(node: ast.expr, names: Mapping[str, Any]) -> Any:
    """The value of a data-only expression; names resolve to already-read ``*_MASTER`` dicts."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise _Unresolved(node.id)
        return names[node.id]
    if isinstance(node, ast.List | ast.Tuple):
        items: list[Any] = []
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                items.extend(_literal(elt.value, names))
                continue
            try:
                items.append(_literal(elt, names))
            except _Unresolved:
                continue  # one child we cannot read drops that child, not the whole tree
        return items
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                continue  # {**other}: rare in these files, and never carries a page
            out[_literal(key, names)] = _literal(value, names)
        return out
    raise _Unresolved(type(node).__name__)


def master_dicts_from_scripts(scripts_dir: Path) -> dict[str, Any]:
    """``{"API_MASTER": {...}, ...}`` read from a keras-io checkout's ``scripts/*_master.py``.

    The files are Python that the site generator imports; they are parsed here, never run
    (a docs checkout is not code we trust). Module-level ``NAME = <data>`` assignments are
    evaluated as literals, with names imported from a sibling ``*_master`` module (``from
    kt_api_master import KT_API_MASTER``) resolved from that module first. Anything that is
    not plain data is skipped.
    """
    scripts_dir = Path(scripts_dir)
    files = {p.stem: p for p in sorted(scripts_dir.glob("*_master.py")) if p.is_file()}
    done: dict[str, dict[str, Any]] = {}

    def read(module: str, stack: tuple[str, ...]) -> dict[str, Any]:
        if module in done:
            return done[module]
        if module in stack or module not in files:
            return {}
        try:
            tree = ast.parse(files[module].read_text(encoding="utf-8"), str(files[module]))
        except (SyntaxError, ValueError, UnicodeDecodeError, OSError):
            done[module] = {}
            return done[module]
        names: dict[str, Any] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                source = read(stmt.module, (*stack, module))
                for alias in stmt.names:
                    if alias.name in source:
                        names[alias.asname or alias.name] = source[alias.name]
            elif (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                try:
                    names[stmt.targets[0].id] = _literal(stmt.value, names)
                except _Unresolved:
                    continue
        done[module] = names
        return names

    masters: dict[str, Any] = {}
    for module in files:
        for name, value in read(module, ()).items():
            if name.endswith("_MASTER") and isinstance(value, Mapping):
                masters.setdefault(name, value)
    return masters


def find_site_map(docs_dir: Path) -> tuple[SiteMap, str] | None:
    """The site map of a docs folder and where it came from, or None if it has none.

    An export ships ``site_map.json`` at its root; a keras-io git checkout has the
    ``scripts/*_master.py`` files it is converted from, which are read directly.
    ``ValueError`` when what is there cannot be read as a site map.
    """
    docs_dir = Path(docs_dir)
    json_file = docs_dir / SITE_MAP_FILE
    if json_file.is_file():
        return SiteMap.load(json_file), str(json_file)
    scripts = docs_dir / "scripts"
    if not scripts.is_dir() or not any(scripts.glob("*_master.py")):
        return None
    masters = master_dicts_from_scripts(scripts)
    try:
        return SiteMap.from_dict(masters), str(docs_dir / SCRIPTS_GLOB)
    except ValueError as exc:
        raise ValueError(f"{docs_dir / SCRIPTS_GLOB}: {exc}") from exc
