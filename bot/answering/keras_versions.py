"""Notice Keras 2 / tf.keras-era APIs in a question and say what Keras 3 has instead.

Two sources of knowledge, both cheap at answer time:

* the installed keras package, read as files (never imported: that would load a backend).
  Its public namespace is the tree of ``keras/**/__init__.py`` outside ``keras/src``; the
  names each one re-exports are read with ``ast``. A module or name the question imports,
  calls or quotes from a traceback that is not in that tree does not exist in the installed
  Keras, and when the same name lives elsewhere (``keras.layers.core.Dense`` →
  ``keras.layers.Dense``, ``K.mean`` → ``keras.ops.mean``) that is the replacement;
* a reviewed table, ``keras3_changes.toml`` (package data), for what the package cannot
  tell: removed methods (``fit_generator``), changed arguments (``lr=``), formats (``.h5``)
  and better wording for the common removals. A row whose symbols all exist in the installed
  keras is switched off.

Precision matters more than recall: a wrong "this was removed" note costs the bot more than a
missing one, so the attribute checks only run on text that looks like code, and a missing
name with no known replacement and no table row stays silent.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.metadata
import importlib.resources
import importlib.util
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

MIGRATION_GUIDE = "https://keras.io/guides/migrating_to_keras_3/"
TABLE_RESOURCE = "keras3_changes.toml"
MAX_REPLY_NOTES = 2

# Where a question's dotted name points into keras under another prefix.
_PREFIXES = (
    ("tensorflow.keras.", "keras."),
    ("tf.keras.", "keras."),
    ("keras.api._v2.keras.", "keras."),  # TF 2.x's generated tf.keras namespace in tracebacks
    ("keras._tf_keras.keras.", "keras."),
)
# Never checked: TF1 compat (still exists in TF), private or vendored copies (the table has
# a row for tensorflow.python.keras), and keras' own implementation package.
_SKIP_PREFIXES = ("tf.compat.", "tensorflow.compat.", "tensorflow.python.", "keras.src.")
# "keras.io", "keras.json" and friends are files and sites, not attributes.
_NOT_ATTRIBUTES = frozenset(
    {"io", "json", "h5", "hdf5", "keras", "py", "com", "org", "yaml", "txt", "cfg", "toml"}
)
# When a name lives in several public modules, the first of these wins (after the modules
# that share the most leading parts with the missing path).
_PREFERRED_MODULES = (
    "keras",
    "keras.layers",
    "keras.ops",
    "keras.models",
    "keras.utils",
    "keras.saving",
    "keras.optimizers",
    "keras.callbacks",
    "keras.losses",
    "keras.metrics",
    "keras.config",
    "keras.backend",
)
# Files whose classes make up keras.Model's members (methods, properties, attributes).
_MODEL_SOURCES = (
    "src/models/model.py",
    "src/models/sequential.py",
    "src/models/functional.py",
    "src/trainers/trainer.py",
    "src/layers/layer.py",
    "src/ops/operation.py",
    "src/backend/tensorflow/trainer.py",
    "src/backend/tensorflow/layer.py",
    "src/backend/jax/trainer.py",
    "src/backend/jax/layer.py",
    "src/backend/torch/trainer.py",
    "src/backend/torch/layer.py",
)

_IDENT = r"[A-Za-z_]\w*"
_DOTTED = rf"{_IDENT}(?:\.{_IDENT})*"
# Also inside a prose sentence ("... and from keras.layers.core import Dense; now ...").
_IMPORTED = rf"{_IDENT}(?:\s+as\s+{_IDENT})?"
_FROM_IMPORT = re.compile(
    rf"(?<![\w.])from\s+({_DOTTED})\s+import\s+\(?\s*({_IMPORTED}(?:\s*,\s*{_IMPORTED})*)"
)
_IMPORT = re.compile(rf"^\s*(?:>>>\s*)?import\s+({_DOTTED})(?:\s+as\s+({_IDENT}))?\s*$", re.M)
_NO_MODULE = re.compile(rf"No module named ['\"]({_DOTTED})['\"]")
_CANNOT_IMPORT = re.compile(rf"cannot import name ['\"]({_IDENT})['\"] from ['\"]({_DOTTED})['\"]")
_MODULE_NO_ATTR = re.compile(rf"module ['\"]({_DOTTED})['\"] has no attribute ['\"]({_IDENT})['\"]")
# A dotted chain not glued to a path, URL or longer name on either side.
_CHAIN = re.compile(rf"(?<![\w./\\-])({_IDENT}(?:\.{_IDENT})+)(?![\w/-])")
_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_CODE_LINE = re.compile(r"[()=\[\]]|^\s*(?:>>>|import\s|from\s|\w+Error\b)")
_K_ASSIGNED = re.compile(r"^\s*K\s*=", re.M)
_ERROR_EVIDENCE = re.compile(
    r"\w+Error\b|has no attribute|No module named|cannot import name|not recognized|"
    r"must end in|not supported|no longer supported"
)


@dataclass(frozen=True)
class VersionNote:
    """One Keras 2 → Keras 3 change a question ran into."""

    key: str  # table row id, or "missing:<dotted name>" for a check against the package
    legacy: str  # what the question used (identifier characters only, or ours)
    change: str  # what happened to it: completes "`legacy` ..."
    replacement: str  # Markdown: what to do now, a clause ("use `model.fit(...)`")
    link: str
    source: str  # "table" or "installed-keras"
    evidence: str  # the question's text that gave it away (raw, ≤ 80 chars: a line's end)
    # The evidence is an error message (a traceback line): the change is what the person is
    # stuck on, so the note alone is worth a reply even when retrieval is unsure.
    from_error: bool = False

    def markdown(self) -> str:
        """One reply line; every part is ours or identifier-only, so nothing to escape."""
        label = "Migration guide" if self.link == MIGRATION_GUIDE else "Docs"
        return (
            f"**Keras 3:** `{self.legacy}` {self.change}; {self.replacement}. "
            f"[{label}]({self.link})"
        )


@dataclass(frozen=True)
class ChangeRow:
    id: str
    legacy: str
    change: str
    use: str
    link: str
    patterns: tuple[re.Pattern[str], ...]
    symbols: tuple[str, ...] = ()


@dataclass(frozen=True)
class KerasApi:
    """The public namespace of an installed keras, as read from its files."""

    version: str | None
    modules: frozenset[str]  # "keras", "keras.layers", "keras.preprocessing.image", ...
    names: Mapping[str, frozenset[str]]  # module -> names it exports
    model_members: frozenset[str]  # methods/attributes defined on keras.Model's classes

    def exists(self, symbol: str) -> bool:
        """Whether a dotted public name (``keras.x.y``) or ``Model.member`` exists."""
        if symbol.startswith("Model."):
            return symbol.removeprefix("Model.") in self.model_members
        if symbol in self.modules:
            return True
        module, _, name = symbol.rpartition(".")
        return name in self.names.get(module, frozenset())

    def modules_with(self, name: str) -> list[str]:
        return sorted(m for m, names in self.names.items() if name in names)


# --- reading the installed package ----------------------------------------------------------


def _exported_names(init_file: Path) -> frozenset[str]:
    try:
        tree = ast.parse(init_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return frozenset()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(names)


def _class_members(source: Path) -> set[str]:
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return set()
    members: set[str] = set()
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for node in cls.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                members.add(node.name)
            elif isinstance(node, ast.Assign):
                members.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return members


def scan_keras_package(package_dir: Path, version: str | None = None) -> KerasApi:
    """The public API of the keras package at ``package_dir`` (its files, not its code)."""
    modules: set[str] = set()
    names: dict[str, frozenset[str]] = {}
    for init in sorted(package_dir.rglob("__init__.py")):
        parts = init.parent.relative_to(package_dir).parts
        if any(p.startswith("_") or p == "src" for p in parts):
            continue
        module = ".".join(("keras", *parts))
        modules.add(module)
        names[module] = _exported_names(init)
    members: set[str] = set()
    for rel in _MODEL_SOURCES:
        members |= _class_members(package_dir / rel)
    return KerasApi(version, frozenset(modules), names, frozenset(members))


@functools.cache
def installed_keras_api() -> KerasApi | None:
    """The installed keras' public API (read once per process), or None without keras."""
    try:
        spec = importlib.util.find_spec("keras")  # a top-level name: nothing is imported
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        return None
    try:
        version: str | None = importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version and not version.startswith("3"):
        return None  # Keras 2 installed: its names are not "missing in Keras 3"
    return scan_keras_package(Path(locations[0]), version)


# --- the reviewed table ---------------------------------------------------------------------


def parse_table(text: str) -> tuple[ChangeRow, ...]:
    data = tomllib.loads(text)
    rows = []
    for raw in data.get("change", []):
        rows.append(
            ChangeRow(
                id=raw["id"],
                legacy=raw["legacy"],
                change=raw["change"],
                use=raw["use"],
                link=raw["link"],
                patterns=tuple(re.compile(p) for p in raw.get("patterns", [])),
                symbols=tuple(raw.get("symbols", [])),
            )
        )
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("keras3_changes.toml: duplicate row ids")
    return tuple(rows)


@functools.cache
def load_table() -> tuple[ChangeRow, ...]:
    resource = importlib.resources.files("bot.answering").joinpath(TABLE_RESOURCE)
    return parse_table(resource.read_text(encoding="utf-8"))


def active_rows(rows: Iterable[ChangeRow], api: KerasApi | None) -> tuple[ChangeRow, ...]:
    """Rows still true for the installed keras: not every one of their symbols came back."""
    if api is None:
        return tuple(rows)
    return tuple(r for r in rows if not r.symbols or not all(api.exists(s) for s in r.symbols))


# --- reading the question -------------------------------------------------------------------


def code_text(text: str) -> str:
    """The parts of a question that look like code: fences, inline code, code-like lines."""
    parts = [m.group(1) for m in _FENCE.finditer(text)]
    prose = _FENCE.sub("\n", text)
    parts += [m.group(1) for m in _INLINE_CODE.finditer(prose)]
    parts += [line for line in _INLINE_CODE.sub(" ", prose).splitlines() if _CODE_LINE.search(line)]
    return "\n".join(parts)


def _aliases(code: str) -> dict[str, str]:
    """Names the question binds to keras modules: ``from keras import backend as K`` ..."""
    aliases: dict[str, str] = {}
    if not _K_ASSIGNED.search(code):
        aliases["K"] = "keras.backend"  # the Keras 2 convention, often shown without import
    for m in _IMPORT.finditer(code):
        if m.group(2):
            aliases[m.group(2)] = m.group(1)
    for m in _FROM_IMPORT.finditer(code):
        module = m.group(1)
        for item in m.group(2).split(","):
            words = item.split()
            if len(words) == 3 and words[1] == "as":
                aliases[words[2]] = f"{module}.{words[0]}"
    # ``import tensorflow.keras as keras`` and the like: "keras" already means keras.
    aliases.pop("keras", None)
    return aliases


def canonical(dotted: str, aliases: Mapping[str, str] | None = None) -> str | None:
    """``dotted`` as a ``keras.*`` path, or None when it is not (checkably) about keras."""
    head, _, rest = dotted.partition(".")
    if aliases and head in aliases:
        dotted = aliases[head] + ("." + rest if rest else "")
    if dotted.startswith(_SKIP_PREFIXES):
        return None
    for old, new in _PREFIXES:
        if dotted.startswith(old):
            dotted = new + dotted.removeprefix(old)
    if dotted in ("tensorflow.keras", "tf.keras"):
        dotted = "keras"
    if dotted != "keras" and not dotted.startswith("keras."):
        return None
    if dotted.startswith(_SKIP_PREFIXES):
        return None
    return dotted


@dataclass(frozen=True)
class _Missing:
    symbol: str  # the first part of the path that does not exist, e.g. "keras.layers.core"
    is_module: bool  # it was used as a module (import path)
    names: tuple[str, ...] = ()  # names imported from it
    dotted: bool = False  # reached as an attribute chain: suggest ``module.name``


def first_missing(
    path: str, api: KerasApi, *, as_module: bool = False, names: tuple[str, ...] = ()
) -> _Missing | None:
    """The first dotted prefix of ``path`` (a canonical keras path) that does not exist.

    Walking stops at the first existing non-module name (``keras.Model.fit``: the members of
    classes are not checked here), and at private parts.
    """
    parts = path.split(".")
    current = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") or part in _NOT_ATTRIBUTES:
            return None
        candidate = f"{current}.{part}"
        if candidate in api.modules:
            current = candidate
            continue
        if part in api.names.get(current, frozenset()):
            return None
        if i < len(parts) - 1 and not names and not as_module:
            # keras.experimental.CosineDecay: the chain's last name is what was wanted.
            last = parts[-1]
            return _Missing(candidate, True, () if last.startswith("_") else (last,), True)
        return _Missing(candidate, as_module or bool(names), names)
    return None


def _rank_modules(candidates: list[str], near: str) -> list[str]:
    def shared(module: str) -> int:
        n = 0
        for a, b in zip(module.split("."), near.split("."), strict=False):
            if a != b:
                break
            n += 1
        return n

    def preferred(module: str) -> int:
        return (
            _PREFERRED_MODULES.index(module)
            if module in _PREFERRED_MODULES
            else len(_PREFERRED_MODULES)
        )

    return sorted(candidates, key=lambda m: (-shared(m), preferred(m), m))


def _replacement(missing: _Missing, api: KerasApi) -> str | None:
    """Where the missing thing's names live in the installed keras, as Markdown."""
    if missing.names:
        homes: dict[str, list[str]] = {}
        for name in missing.names:
            found = _rank_modules(api.modules_with(name), missing.symbol)
            if not found:
                return None
            homes.setdefault(found[0], []).append(name)
        if missing.dotted:
            return "use " + ", ".join(f"`{m}.{n}`" for m, ns in homes.items() for n in ns)
        imports = " and ".join(f"`from {m} import {', '.join(ns)}`" for m, ns in homes.items())
        return f"use {imports}"
    parent, _, name = missing.symbol.rpartition(".")
    if missing.is_module:
        # Keras 2's implementation modules (keras.layers.core, keras.utils.vis_utils, ...):
        # Keras 3 exports their public names from the package itself. Directly under
        # ``keras`` that does not hold (keras.engine): the table speaks for those.
        return f"import the names directly from `{parent}`" if parent != "keras" else None
    found = _rank_modules(api.modules_with(name), parent)
    if found:
        return f"use `{found[0]}.{name}`"
    # Keras 2 had lower-case aliases (``keras.optimizers.adam``) of what is now a class.
    same = [n for n in api.names.get(parent, frozenset()) if n.lower() == name.lower()]
    return f"use `{parent}.{same[0]}`" if len(same) == 1 else None


def _found_missing(text: str, code: str, api: KerasApi) -> Iterator[tuple[int, _Missing, str]]:
    """(position, missing thing, evidence) for each checkable keras path not in ``api``."""
    aliases = _aliases(code)
    # Tracebacks: anywhere in the text, they are quoted by the interpreter.
    for m in _NO_MODULE.finditer(text):
        if (path := canonical(m.group(1))) and (miss := first_missing(path, api, as_module=True)):
            yield m.start(), miss, m.group(0)
    for m in _CANNOT_IMPORT.finditer(text):
        path = canonical(m.group(2))
        if path and (miss := first_missing(f"{path}.{m.group(1)}", api)):
            yield m.start(), miss, m.group(0)
    for m in _MODULE_NO_ATTR.finditer(text):
        path = canonical(m.group(1))
        if path and (miss := first_missing(f"{path}.{m.group(2)}", api)):
            yield m.start(), miss, m.group(0)
    # Code: imports, then attribute chains.
    for m in _FROM_IMPORT.finditer(text):
        path = canonical(m.group(1), aliases)
        if not path:
            continue
        names = tuple(w.split()[0] for w in m.group(2).split(",") if w.split())
        evidence = m.group(0).strip()
        if miss := first_missing(path, api, as_module=True, names=names):
            yield m.start(), miss, evidence
            continue
        for name in names:  # the module exists: each name it no longer has
            if miss := first_missing(f"{path}.{name}", api):
                yield m.start(), miss, evidence
    for m in _IMPORT.finditer(code):
        path = canonical(m.group(1), aliases)
        if path and (miss := first_missing(path, api, as_module=True)):
            yield _pos(text, m.group(0)), miss, m.group(0).strip()
    for m in _CHAIN.finditer(code):
        path = canonical(m.group(1), aliases)
        if path and (miss := first_missing(path, api)):
            yield _pos(text, m.group(1)), miss, m.group(1)


def _pos(text: str, fragment: str) -> int:
    at = text.find(fragment.strip())
    return at if at >= 0 else len(text)


def _row_for(symbol: str, rows: Iterable[ChangeRow]) -> ChangeRow | None:
    for row in rows:
        for s in row.symbols:
            if symbol == s or symbol.startswith(s + "."):
                return row
    return None


def _row_note(row: ChangeRow, evidence: str) -> VersionNote:
    return VersionNote(
        key=row.id,
        legacy=row.legacy,
        change=row.change,
        replacement=row.use,
        link=row.link,
        source="table",
        evidence=evidence,
    )


def detect_legacy_apis(
    text: str,
    *,
    api: KerasApi | None = None,
    rows: tuple[ChangeRow, ...] | None = None,
    use_installed: bool = True,
) -> list[VersionNote]:
    """Keras 2 / tf.keras-era usages in a question, first occurrence first, one per change.

    ``api`` defaults to the installed keras (``use_installed=False``: table only); ``rows``
    to the shipped table. Notes from error messages come before the rest: the error is what
    the person is stuck on.
    """
    if api is None and use_installed:
        api = installed_keras_api()
    table = active_rows(load_table() if rows is None else rows, api)
    found: dict[str, tuple[tuple[int, int], VersionNote]] = {}

    def add(pos: int, note: VersionNote) -> None:
        is_error = bool(_ERROR_EVIDENCE.search(note.evidence))
        order = (0 if is_error else 1, pos)
        if note.key not in found or order < found[note.key][0]:
            # Keep the end of a long line: the match is there, the line's start may be prose.
            short = note.evidence if len(note.evidence) <= 80 else "…" + note.evidence[-79:]
            found[note.key] = (
                order,
                dataclasses.replace(note, evidence=short, from_error=is_error),
            )

    for row in table:
        for pattern in row.patterns:
            # Every match: the one in a traceback line, if any, is the evidence to keep.
            for m in pattern.finditer(text):
                line = text[text.rfind("\n", 0, m.start()) + 1 : m.end()].strip()
                add(m.start(), _row_note(row, line))
    if api is not None:
        code = code_text(text)
        for pos, miss, evidence in _found_missing(text, code, api):
            covering = _row_for(miss.symbol, table)
            if covering is not None:
                add(pos, _row_note(covering, evidence))
            elif (use := _replacement(miss, api)) is not None:
                add(pos, _derived_note(miss, use, evidence))
    return [note for _, note in sorted(found.values(), key=lambda item: item[0])]


def _derived_note(miss: _Missing, use: str, evidence: str) -> VersionNote:
    return VersionNote(
        key=f"missing:{miss.symbol}",
        legacy=miss.symbol,
        change="does not exist",
        replacement=use,
        link=MIGRATION_GUIDE,
        source="installed-keras",
        evidence=evidence,
    )


def notes_markdown(notes: Iterable[VersionNote], *, limit: int = MAX_REPLY_NOTES) -> list[str]:
    """The reply's Keras 3 lines: the first ``limit`` notes, one line each."""
    return [n.markdown() for n in list(notes)[:limit]]
