"""API reference documents read from an installed package's source with ``ast``.

The package is never imported: importing keras pulls in a backend (TensorFlow, JAX, torch),
which is slow, may be missing, and would make the index depend on the builder's environment.
Public names come from export decorators such as keras' ``@keras_export("keras.layers.LSTM")``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
import logging
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from bot.corpus.documents import Document

log = logging.getLogger(__name__)

_FuncDef: TypeAlias = ast.FunctionDef | ast.AsyncFunctionDef
_Def: TypeAlias = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
_DEF_TYPES = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_BLOCKS = tuple(t for t in (ast.If, ast.Try, getattr(ast, "TryStar", None), ast.With) if t)


@dataclass(frozen=True)
class ApiSymbol:
    """One public API object, as found in source."""

    name: str
    aliases: tuple[str, ...]
    kind: str
    signature: str
    docstring: str
    source_file: str
    lineno: int


class PackageNotFoundError(LookupError):
    """The requested package is not installed (or is not a package directory)."""


def find_package_dir(package: str) -> Path:
    """Directory of an installed package, found without executing any of its code.

    ``find_spec`` of a dotted name would import the parents, so only the top-level name is
    looked up and sub-packages are located on disk.
    """
    top, *rest = package.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        raise PackageNotFoundError(f"cannot locate package {package!r}: {exc}") from exc
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]).joinpath(*rest) if locations else None
    if path is None or not path.is_dir():
        raise PackageNotFoundError(f"package {package!r} is not installed (or is not a package)")
    return path


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _flat(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a block, including those under if/try/with (conditional imports, defs)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, _BLOCKS):
            for block in (stmt.body, getattr(stmt, "orelse", []), getattr(stmt, "finalbody", [])):
                yield from _flat(block)
            for handler in getattr(stmt, "handlers", []):
                yield from _flat(handler.body)


def _dotted(expr: ast.expr) -> list[str]:
    if isinstance(expr, ast.Attribute):
        head = _dotted(expr.value)
        return [*head, expr.attr] if head else []
    return [expr.id] if isinstance(expr, ast.Name) else []


def _decorators(fn: _Def) -> set[str]:
    return {d[-1] for d in map(_dotted, fn.decorator_list) if d}


def _doc(node: _Def) -> str:
    return inspect.cleandoc(ast.get_docstring(node, clean=False) or "")


def _render_args(args: ast.arguments, *, drop_first: bool) -> str:
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += args.defaults
    parts: list[str] = []
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        if i > 0 or not drop_first:
            parts.append(arg.arg if default is None else f"{arg.arg}={ast.unparse(default)}")
            if i == len(args.posonlyargs) - 1:
                parts.append("/")
    if args.vararg or args.kwonlyargs:
        parts.append(f"*{args.vararg.arg}" if args.vararg else "*")
    for arg, kw in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        parts.append(arg.arg if kw is None else f"{arg.arg}={ast.unparse(kw)}")
    if args.kwarg:
        parts.append(f"**{args.kwarg.arg}")
    return ", ".join(parts)


def _call_signature(name: str, fn: _FuncDef, *, method: bool) -> str:
    decorators = _decorators(fn)
    if method and decorators & {"property", "cached_property"}:
        return name
    drop = method and "staticmethod" not in decorators
    return f"{name}({_render_args(fn.args, drop_first=drop)})"


def _pick(names: list[str], preferred: Collection[str]) -> tuple[str, tuple[str, ...]]:
    canonical = next((n for n in names if n in preferred), names[0])
    return canonical, tuple(dict.fromkeys(n for n in names if n != canonical))


@dataclass(eq=False)  # identity semantics: modules are cached, classes are keyed by node
class _Module:
    name: str
    path: Path
    is_pkg: bool
    tree: ast.Module
    defs: dict[str, _Def]
    imports: dict[str, tuple[str, str | None]]  # local name -> (module, attribute or None)


_Ref: TypeAlias = tuple[_Module, ast.ClassDef]


def _c3(seqs: list[list[_Ref]]) -> list[_Ref]:
    result: list[_Ref] = []
    seqs = [s for s in seqs if s]
    while seqs:
        head = next((s[0] for s in seqs if not any(s[0] in t[1:] for t in seqs)), None)
        if head is None:  # inconsistent hierarchy: settle for left-to-right order
            return result + list(dict.fromkeys(r for s in seqs for r in s))
        result.append(head)
        seqs = [r for s in seqs if (r := s[1:] if s[0] == head else s)]
    return result


class _Scanner:
    def __init__(self, package_dir: Path, decorators: Collection[str], preferred: Collection[str]):
        self.package_dir = package_dir
        self.root = package_dir.parent
        self.decorators = frozenset(decorators)
        self.preferred = frozenset(preferred)
        self._modules: dict[str, _Module | None] = {}
        self._bases: dict[ast.ClassDef, list[_Ref]] = {}
        self._unresolved: set[ast.ClassDef] = set()
        self._mros: dict[ast.ClassDef, list[_Ref]] = {}
        self._members: dict[ast.ClassDef, dict[str, _FuncDef]] = {}
        self._exported: set[_Def] = set()

    def _load(self, name: str) -> _Module | None:
        if name in self._modules:
            return self._modules[name]
        self._modules[name] = None  # also guards against re-entry
        parts = name.split(".")
        if parts[0] != self.package_dir.name:
            return None
        path = self.root.joinpath(*parts, "__init__.py")
        if not path.is_file():
            path = self.root.joinpath(*parts[:-1], f"{parts[-1]}.py")
        if path.is_file() and (tree := self._parse(path)):
            is_pkg = path.name == "__init__.py"
            self._modules[name] = self._index(name, path, is_pkg, tree)
        return self._modules[name]

    @staticmethod
    def _parse(path: Path) -> ast.Module | None:
        try:
            source = path.read_text(encoding="utf-8")
            with warnings.catch_warnings():  # e.g. invalid escape sequences in someone's code
                warnings.simplefilter("ignore")
                return ast.parse(source, filename=str(path))
        except (SyntaxError, ValueError, OSError) as exc:
            log.warning("skipping %s: cannot parse (%s)", path, exc)
            return None

    def _index(self, name: str, path: Path, is_pkg: bool, tree: ast.Module) -> _Module:
        defs: dict[str, _Def] = {}
        imports: dict[str, tuple[str, str | None]] = {}
        package = name.split(".") if is_pkg else name.split(".")[:-1]
        for stmt in _flat(tree.body):  # setdefault: the first of conditional alternatives wins
            if isinstance(stmt, _DEF_TYPES):
                defs.setdefault(stmt.name, stmt)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    local = alias.asname or alias.name.split(".")[0]
                    imports.setdefault(local, (alias.name if alias.asname else local, None))
            elif isinstance(stmt, ast.ImportFrom) and stmt.level <= len(package) + 1:
                up = package[: len(package) - stmt.level + 1] if stmt.level else []
                source = ".".join([*up, *([stmt.module] if stmt.module else [])])
                for alias in stmt.names:
                    imports.setdefault(alias.asname or alias.name, (source, alias.name))
        return _Module(name, path, is_pkg, tree, defs, imports)

    def _resolve(
        self, mod: _Module | None, name: str, seen: set[tuple[str, str]], parent: str = ""
    ) -> tuple[_Module, _Def | None] | None:
        """What ``name`` means in ``mod`` (module ``parent`` if it could not be read)."""
        if mod is not None and (mod.name, name) not in seen:
            seen.add((mod.name, name))
            if name in mod.defs:
                return mod, mod.defs[name]
            source, attr = mod.imports.get(name, ("", None))
            if source and attr is None:
                target = self._load(source)
                return (target, None) if target else None
            if source and attr is not None:
                found = self._resolve(self._load(source), attr, seen, source)
                if found:
                    return found
        sub = self._load(f"{mod.name if mod else parent}.{name}")  # implicit submodule access
        return (sub, None) if sub else None

    def _resolve_class(self, mod: _Module, expr: ast.expr) -> _Ref | None:
        parts = _dotted(expr)
        found = self._resolve(mod, parts[0], set()) if parts else None
        for part in parts[1:]:
            if found is None or found[1] is not None:
                return None
            found = self._resolve(found[0], part, set())
        return (found[0], found[1]) if found and isinstance(found[1], ast.ClassDef) else None

    def _base_refs(self, ref: _Ref) -> list[_Ref]:
        mod, node = ref
        if node not in self._bases:
            self._bases[node] = []
            for expr in node.bases:
                base = self._resolve_class(mod, expr)
                if base is not None:
                    self._bases[node].append(base)
                elif _dotted(expr)[-1:] != ["object"]:
                    self._unresolved.add(node)
        return self._bases[node]

    def _mro(self, ref: _Ref) -> list[_Ref]:
        node = ref[1]
        if node not in self._mros:
            self._mros[node] = [ref]  # cycle guard
            bases = self._base_refs(ref)
            self._mros[node] = [ref, *_c3([*(list(self._mro(b)) for b in bases), list(bases)])]
        return self._mros[node]

    def _methods_of(self, node: ast.ClassDef) -> dict[str, _FuncDef]:
        if node not in self._members:
            members: dict[str, _FuncDef] = {}
            for stmt in node.body:  # setdefault: a property's getter precedes its setter
                if isinstance(stmt, _FuncDef) and "overload" not in _decorators(stmt):
                    members.setdefault(stmt.name, stmt)
            self._members[node] = members
        return self._members[node]

    def _owned(self, ref: _Ref) -> list[_Ref]:
        """The class and its bases reachable without passing through another exported class."""
        owned, stack = [ref], [ref]
        while stack:
            for base in self._base_refs(stack.pop()):
                if base[1] not in self._exported and base not in owned:
                    owned.append(base)
                    stack.append(base)
        return owned

    def _export_names(self, expr: ast.expr) -> list[str]:
        func = _dotted(expr.func) if isinstance(expr, ast.Call) else []
        if not isinstance(expr, ast.Call) or not func or func[-1] not in self.decorators:
            return []
        arg = expr.args[0] if expr.args else next((k.value for k in expr.keywords), None)
        items = arg.elts if isinstance(arg, ast.List | ast.Tuple) else [arg]
        return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]

    def _collect(
        self, mod: _Module, body: list[ast.stmt], in_class: bool = False
    ) -> Iterator[tuple[_Module, _Def, list[str], bool]]:
        for stmt in _flat(body):
            if isinstance(stmt, _DEF_TYPES):
                names = [n for d in stmt.decorator_list for n in self._export_names(d)]
                if names:
                    yield mod, stmt, names, in_class
                if isinstance(stmt, ast.ClassDef):
                    yield from self._collect(mod, stmt.body, True)
            elif not in_class and isinstance(stmt, ast.Expr | ast.Assign):
                # keras_export("name")(fn) applied after the fact; only defs have docs to show
                call = stmt.value
                if isinstance(call, ast.Call) and len(call.args) == 1:
                    names, target = self._export_names(call.func), call.args[0]
                    if names and isinstance(target, ast.Name) and target.id in mod.defs:
                        yield mod, mod.defs[target.id], names, False

    def _rel(self, mod: _Module) -> str:
        return mod.path.relative_to(self.root).as_posix()

    def _class_signature(self, ref: _Ref, name: str) -> str:
        mro = self._mro(ref)
        for _, node in mro:
            if init := self._methods_of(node).get("__init__"):
                return _call_signature(name, init, method=True)
        return f"{name}(...)" if any(n in self._unresolved for _, n in mro) else f"{name}()"

    def _methods(self, ref: _Ref, class_names: list[str]) -> Iterator[ApiSymbol]:
        mro, owned = self._mro(ref), self._owned(ref)
        inherited = {m for _, node in owned[1:] for m in self._methods_of(node)}
        done: set[str] = set()
        for cls in mro:
            for meth, fn in self._methods_of(cls[1]).items():
                if meth.startswith("_") or meth in done:
                    continue
                done.add(meth)  # the first definer in MRO order is the one that applies
                if fn in self._exported:
                    continue
                # Own methods need a docstring or to override a non-exported base's method;
                # methods that come from an exported base are documented on that base.
                if cls[1] is ref[1] and not (ast.get_docstring(fn) or meth in inherited):
                    continue
                if cls[1] is not ref[1] and cls not in owned:
                    continue
                documented = (
                    (m, f) for m, n in mro if (f := self._methods_of(n).get(meth)) and _doc(f)
                )
                doc_mod, doc_fn = next(documented, (None, None))
                if doc_mod is None or doc_fn is None:
                    continue
                name, aliases = _pick([f"{c}.{meth}" for c in class_names], self.preferred)
                signature, where = _call_signature(name, fn, method=True), self._rel(doc_mod)
                yield ApiSymbol(
                    name, aliases, "method", signature, _doc(doc_fn), where, doc_fn.lineno
                )

    def scan(self) -> list[ApiSymbol]:
        exports: list[tuple[_Module, _Def, list[str], bool]] = []
        for path in sorted(self.package_dir.rglob("*.py")):
            name, rel = path.name, path.relative_to(self.package_dir)
            if name.endswith("_test.py") or name.startswith("test_") or "tests" in rel.parts:
                continue
            # Cheap pre-filter: most files export nothing; _load parses them only to resolve a base.
            text = path.read_text(encoding="utf-8", errors="replace")
            if not any(d in text for d in self.decorators):
                continue
            parts = path.relative_to(self.root).with_suffix("").parts
            mod = self._load(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            if mod is not None:
                exports.extend(self._collect(mod, mod.tree.body))
        self._exported = {node for _, node, _, _ in exports}

        symbols: dict[str, ApiSymbol] = {}
        methods: list[ApiSymbol] = []
        for mod, node, all_names, in_class in exports:
            # Names under a private component (keras._legacy, keras._tf_keras) are not public API.
            names = [n for n in all_names if not any(p.startswith("_") for p in n.split("."))]
            if not names:
                continue
            name, aliases = _pick(names, self.preferred)
            doc = _doc(node)
            if isinstance(node, ast.ClassDef):
                kind, signature = "class", self._class_signature((mod, node), name)
                methods.extend(self._methods((mod, node), [name, *aliases]))
                # keras.Variable/keras.Optimizer are empty shells over a backend-selected class:
                # like inspect.getdoc, borrow the docstring, but never from another export.
                owned = self._owned((mod, node))
                bases = [r for r in self._mro((mod, node)) if r in owned]
                doc = doc or next((d for r in bases if (d := _doc(r[1]))), "")
            else:
                kind = "method" if in_class else "function"
                signature = _call_signature(name, node, method=in_class)
            where = self._rel(mod)
            symbols.setdefault(
                name, ApiSymbol(name, aliases, kind, signature, doc, where, node.lineno)
            )
        for method in methods:  # an explicit export wins over a generated method name
            symbols.setdefault(method.name, method)
        return sorted(symbols.values(), key=lambda s: s.name)


def scan_package(
    package_dir: Path,
    *,
    export_decorators: Collection[str] = ("keras_export",),
    preferred_names: Collection[str] = (),
) -> list[ApiSymbol]:
    """Every exported symbol (and documented public method) under ``package_dir``, by name."""
    return _Scanner(Path(package_dir), export_decorators, preferred_names).scan()


# A short capitalised phrase alone on a line ("Args:", "Call arguments:", "Usage in a model:").
_SECTION = re.compile(r"[A-Z][\w()'-]*(?: [\w()'-]+){0,4}:")
_FENCE = re.compile(r"\s*(```|~~~)")


def docstring_to_markdown(doc: str) -> str:
    """Google-style section lines become ``##`` headings; ``>>>`` blocks get python fences."""
    out: list[str] = []
    lines = doc.splitlines()
    in_fence, i = False, 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and _SECTION.fullmatch(line):
            line = f"## {line[:-1]}"
        elif not in_fence and line.lstrip().startswith(">>>"):
            indent = len(line) - len(line.lstrip())
            out.extend(["```python", line[indent:]])
            # A doctest runs to the next blank or less indented line.
            while i < len(lines) and lines[i].strip() and not lines[i][:indent].strip():
                out.append(lines[i][indent:])
                i += 1
            line = "```"
        out.append(line)
    return "\n".join(out)


def _default_url(package: str, version: str, symbol: ApiSymbol) -> str:
    if package != "keras":
        suffix = "" if version == "unknown" else f"{version}/"
        return f"https://pypi.org/project/{package}/{suffix}"
    ref = "master" if version == "unknown" else f"v{version}"
    return f"https://github.com/keras-team/keras/blob/{ref}/{symbol.source_file}#L{symbol.lineno}"


def iter_api_documents(
    package: str = "keras",
    *,
    package_dir: Path | None = None,
    preferred_names: Collection[str] = (),
    url_for: Callable[[ApiSymbol], str | None] | None = None,
    export_decorators: Collection[str] = ("keras_export",),
) -> Iterator[Document]:
    """One ``kind="api"`` Document per public symbol of ``package``, sorted by doc id."""
    directory = package_dir if package_dir is not None else find_package_dir(package)
    version = package_version(package)
    for symbol in scan_package(
        directory, export_decorators=export_decorators, preferred_names=preferred_names
    ):
        text = f"# {symbol.name}\n\n```python\n{symbol.signature}\n```\n"
        if symbol.docstring:
            text += f"\n{docstring_to_markdown(symbol.docstring)}\n"
        yield Document(
            doc_id=symbol.name,
            title=symbol.name,
            url=(url_for(symbol) if url_for else None) or _default_url(package, version, symbol),
            source=f"python-api:{package}",
            source_version=version,
            text=text,
            kind="api",
            aliases=symbol.aliases,
            symbols=(symbol.name, *symbol.aliases),
        )
