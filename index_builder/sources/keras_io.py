"""keras.io pages (guides, code examples, templates) as :class:`Document` objects.

The corpus is a keras-io checkout or export: ``guides/md``, ``examples/<domain>/md`` and
``templates`` hold the Markdown the site is rendered from (see MANIFEST.txt for the URL
rules). Pages are cleaned for search: notebook badges, author/date lines, raw HTML, images
and long training logs carry no answerable content and only dilute embeddings.

API symbols the site documents but whose source is not indexed (KerasNLP, KerasCV, ... when
those packages are not installed) get a small stub document from the site map, so a
question naming them still finds the right page.
"""

from __future__ import annotations

import hashlib
import html
import re
import subprocess
from collections.abc import Collection, Iterator
from pathlib import Path, PurePosixPath

from bot.corpus.documents import Document
from index_builder.sources.site_map import SiteMap

SOURCE = "keras-io"
SYMBOL_STUB_SOURCE = "site-map"

# -- file -> page mapping ------------------------------------------------------------------


def page_path_for(rel: PurePosixPath) -> str | None:
    """The keras.io page path of a corpus file (relative path), or None if it is not a page.

    - ``guides/md/<name>.md``            -> ``guides/<name>`` (subfolders kept)
    - ``examples/<domain>/md/<name>.md`` -> ``examples/<domain>/<name>``
    - ``templates/<path>/index.md``      -> ``<path>``
    - ``templates/<path>/<name>.md``     -> ``<path>/<name>``
    """
    parts = PurePosixPath(rel).parts
    if not parts or not parts[-1].endswith(".md") or any(p in ("..", "") for p in parts):
        return None
    stem_parts = (*parts[:-1], parts[-1][: -len(".md")])
    if not stem_parts[-1]:
        return None
    if stem_parts[0] == "guides" and len(stem_parts) >= 3 and stem_parts[1] == "md":
        return "/".join(("guides", *stem_parts[2:]))
    if stem_parts[0] == "examples" and len(stem_parts) >= 4 and stem_parts[2] == "md":
        return "/".join(("examples", stem_parts[1], *stem_parts[3:]))
    if stem_parts[0] == "templates" and len(stem_parts) >= 2:
        rest = stem_parts[1:]
        if rest[-1] == "index":
            rest = rest[:-1]
        # templates/index.md would be the home page, whose id would be empty: not a page here.
        return "/".join(rest) or None
    return None


def _priority(rel: PurePosixPath) -> int:
    # templates/examples/audio/*.md duplicate examples/audio/md/*.md (build copies that
    # add a version banner); the rendered example under examples/ is the canonical file.
    return 1 if rel.parts[0] == "templates" else 0


# -- version -------------------------------------------------------------------------------


def docs_version(docs_dir: Path) -> str:
    """The checkout's commit if ``docs_dir`` is the root of a git work tree, else a content hash.

    The commit check uses ``--show-toplevel`` so a plain export that merely sits inside some
    other repository doesn't borrow that repository's HEAD.
    """
    docs_dir = Path(docs_dir)
    try:
        proc = subprocess.run(
            ["git", "-C", str(docs_dir), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        proc = None  # git missing or hung: fall back to hashing
    if proc is not None and proc.returncode == 0:
        lines = proc.stdout.split()
        if (
            len(lines) == 2
            and re.fullmatch(r"[0-9a-f]{40,64}", lines[1])
            and Path(lines[0]).resolve() == docs_dir.resolve()
        ):
            return lines[1]
    h = hashlib.sha256()
    root = docs_dir.resolve()
    files = sorted(
        p
        for p in docs_dir.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(docs_dir).parts and _inside(p, root)
    )
    for p in files:
        h.update(p.relative_to(docs_dir).as_posix().encode("utf-8"))
        h.update(b"\x00")
        h.update(p.read_bytes())
        h.update(b"\x00")
    return "sha256:" + h.hexdigest()[:12]


# -- cleanup -------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
_DROP_LINE = re.compile(
    r"k-inline-icon|View in Colab|^\s*\*\*(Authors?|Date created|Last modified):\*\*",
    re.IGNORECASE,
)
_DESCRIPTION = re.compile(r"^\s*\*\*Description:\*\*\s*")
_IMAGE = r"!\[[^\]]*\]\([^)]*\)"
_IMAGE_ONLY = re.compile(rf"^\s*(?:{_IMAGE}|\[{_IMAGE}\]\([^)]*\)|\s)+$")
_RULE = re.compile(r"^\s{0,3}(?:-{3,}|\*{3,}|_{3,})\s*$")
# HTML blocks (opening tag at the start of a line) whose content is never prose: embedded
# viewers, styles, audio players. The exporter sometimes put ``` fences inside them, so
# they are removed from the whole text before fences are parsed; no code block in the
# corpus has such a line.
_JUNK_ELEMENTS = re.compile(
    r"^[ \t]*(?:<[^<>\n]*>)*<(iframe|script|style|audio|video|svg|object)\b.*?</\1\s*>[^\n]*",
    re.IGNORECASE | re.DOTALL | re.MULTILINE,
)
# HTML blocks that hold program output (rich-rendered model summaries, pandas tables).
_OUTPUT_ELEMENTS = re.compile(
    r"^[ \t]*(?:<[^<>\n]*>)*<(pre|table)\b[^>]*>(.*?)</\1\s*>[^\n]*",
    re.IGNORECASE | re.DOTALL | re.MULTILINE,
)
_HTML_TAGS = (
    "a|abbr|b|br|center|code|dd|details|div|dl|dt|em|figcaption|figure|font|h[1-6]|hr|i|img|"
    "li|ol|p|pre|small|source|span|strong|sub|summary|sup|table|tbody|td|th|thead|tr|u|ul"
)
# Only real HTML tag names, so placeholders such as `<output_a>` in prose survive.
_TAG = re.compile(rf"</?(?:{_HTML_TAGS})\b[^<>]*/?>", re.IGNORECASE)
_TAG_ANY = re.compile(r"<[^<>]*>")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_TEMPLATE_TAG = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")

#: Output blocks longer than this are cut to their first lines: a log tail is not content.
MAX_OUTPUT_LINES = 12
KEEP_OUTPUT_LINES = 6
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# C0 controls other than tab/newline: backspaces and carriage returns from progress bars.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BAR = re.compile(r"[━█▓░■]{3,}")
_PROGRESS = re.compile(r"[━─█▓░■=>]{4,}|^\s*\d+/\d+\b|^Epoch \d+/\d+")
_NOISE_CHARS = frozenset("0123456789.,:;-+=_/|()[]{}%eE'\"")


def _is_noise(line: str) -> bool:
    """A log/number line: progress bars, epoch counters, arrays, table rules."""
    text = line.strip()
    if not text:
        return False
    if _PROGRESS.search(text):
        return True
    chars = [c for c in text if not c.isspace()]
    # Box-drawing and block elements (U+2500-U+259F) are rich tables and bars.
    noise = sum(1 for c in chars if c in _NOISE_CHARS or "\u2500" <= c <= "\u259f")
    return noise / len(chars) >= 0.6


def _trim_output(lines: list[str], *, is_output: bool) -> list[str]:
    """Drop a block that is mostly numbers/bars; cut long program output to its head."""
    # Progress bars never carry content, whatever surrounds them.
    lines = [ln for ln in lines if not _BAR.search(ln)]
    content = [ln for ln in lines if ln.strip()]
    if not content:
        return []
    noisy = sum(1 for ln in content if _is_noise(ln))
    if noisy / len(content) >= 0.5 and (is_output or len(content) > 3):
        return []
    if is_output and len(content) > MAX_OUTPUT_LINES:
        return [*content[:KEEP_OUTPUT_LINES], "..."]
    return lines


def _strip_tags(line: str) -> str:
    """Remove HTML tags outside inline code spans."""
    out: list[str] = []
    pos = 0
    for m in _INLINE_CODE.finditer(line):
        out.append(_TAG.sub("", line[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_TAG.sub("", line[pos:]))
    return "".join(out)


def _html_output(match: re.Match[str]) -> str:
    """A <pre>/<table> block as a plain fenced output block, or nothing if it is noise."""
    inner = match.group(2)
    if match.group(1).lower() == "table":
        # One line per row, cells joined with " | ", instead of one cell per line.
        rows = re.split(r"</tr\s*>", inner, flags=re.IGNORECASE)
        cells = (re.findall(r"<t[hd]\b[^>]*>(.*?)</t[hd]\s*>", row, re.I | re.S) for row in rows)
        lines = [" | ".join(_TAG_ANY.sub("", c).strip() for c in row) for row in cells]
    else:
        lines = _TAG_ANY.sub("", inner).splitlines()
    lines = [html.unescape(ln).rstrip() for ln in lines if not _FENCE_OPEN.match(ln)]
    kept = [ln for ln in _trim_output(lines, is_output=True) if ln.strip()]
    if not kept:
        return ""
    return "\n```\n" + "\n".join(kept) + "\n```\n"


def _clean_prose(segment: str) -> str:
    """Clean a stretch of Markdown that contains no fenced code."""
    out: list[str] = []
    for line in segment.split("\n"):
        if _DROP_LINE.search(line) or _IMAGE_ONLY.match(line) or _BAR.search(line):
            continue
        line = _DESCRIPTION.sub("", line)
        stripped = _strip_tags(line)
        if stripped.strip() == "" and line.strip() != "":
            continue  # the line was markup only (<div ...>, </div>, <br>)
        if _RULE.match(stripped) and (not out or not out[-1].strip()):
            continue  # "---" before each "## " heading; not a setext underline after blank
        out.append(stripped.rstrip())
    return "\n".join(out)


def clean_markdown(text: str) -> str:
    """Markdown of a keras.io page, reduced to what is worth searching.

    Fenced code with a language is kept verbatim; fences without one are program output
    (keras.io wraps them in ``<div class="k-default-codeblock">``) and are dropped when they
    are mostly numbers or progress bars, or cut to their first lines when long.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", _ANSI.sub("", text))
    text = _OUTPUT_ELEMENTS.sub(_html_output, _JUNK_ELEMENTS.sub("", text))
    lines = text.split("\n")
    out: list[str] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if m is None:
            prose.append(lines[i])
            i += 1
            continue
        fence, lang = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and not re.match(
            rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]
        ):
            j += 1
        body = lines[i + 1 : j]
        previous = next((ln for ln in reversed(prose) if ln.strip()), "")
        out.append(_clean_prose("\n".join(prose)))
        prose = []
        if lang:
            out.append("\n".join([lines[i], *body, fence, ""]))
        else:
            is_output = "k-default-codeblock" in previous
            kept = _trim_output(body, is_output=is_output)
            while kept and not kept[-1].strip():
                kept.pop()
            if kept:
                out.append("\n".join([fence, *kept, fence, ""]))
        i = j + 1
    out.append(_clean_prose("\n".join(prose)))
    cleaned = "\n".join(out)
    cleaned = re.sub(r"\n{3,}", "\n\n", cleaned)  # collapse the gaps removed lines leave
    return cleaned.strip() + "\n"


# -- template tags -------------------------------------------------------------------------


def _child_list(site_map: SiteMap, path: str) -> list[str]:
    page = site_map.get(path)
    if page is None:
        return []
    items = []
    for child_path in page.children:
        child = site_map.pages.get(child_path)
        if child is None:
            continue
        item = f"- {child.title}"
        if child.symbols:
            item += f" ({', '.join(child.symbols)})"
        items.append(item)
    return items


def render_template_tags(text: str, path: str, site_map: SiteMap | None) -> str:
    """Replace ``{{toc}}``/``{{autogenerated}}``/... with what the site would list there.

    ``{{toc}}`` (and ``{{examples_list}}``) list the page's children with their symbols;
    ``{{autogenerated}}`` stands for the reference of the page's own symbols (falling back
    to the children). Tags whose data isn't in the corpus (preset tables) are removed.
    """

    def replace(m: re.Match[str]) -> str:
        if site_map is None:
            return ""
        tag = m.group(1).lower()
        items: list[str] = []
        if tag == "autogenerated":
            page = site_map.get(path)
            items = [f"- {s}" for s in page.symbols] if page is not None else []
        if tag in ("toc", "examples_list", "autogenerated") and not items:
            items = _child_list(site_map, path)
        return "\n".join(items)

    return _TEMPLATE_TAG.sub(replace, text)


# -- documents -----------------------------------------------------------------------------

_FIRST_H1 = re.compile(r"^# +(.+?)\s*#*\s*$", re.MULTILINE)


def _first_heading(text: str) -> str | None:
    in_fence = False
    for line in text.split("\n"):
        if _FENCE_OPEN.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            m = _FIRST_H1.match(line)
            if m:
                return m.group(1).strip()
    return None


def _humanise(path: str) -> str:
    words = path.rsplit("/", 1)[-1].replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else path


def _inside(file: Path, root: Path) -> bool:
    """Whether ``file``, all links followed, is within ``root`` (an already resolved path)."""
    try:
        return file.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a broken or looping link
        return False


def _candidate_files(docs_dir: Path) -> Iterator[tuple[Path, bool]]:
    """(file, resolves inside the docs folder) for each ``.md`` file under the page folders."""
    root = docs_dir.resolve()
    for top in ("guides", "examples", "templates"):
        folder = docs_dir / top
        if not folder.is_dir():
            continue
        for file in folder.rglob("*.md"):
            if file.is_file():
                yield file, _inside(file, root)


def links_outside(docs_dir: Path) -> list[str]:
    """Page files (relative paths) that are links resolving outside ``docs_dir``: never read.

    A checkout is not trusted to stay in its folder: a ``.md`` link to ``~/.ssh/...`` or a
    ``.env`` would otherwise be indexed and quoted in replies.
    """
    docs_dir = Path(docs_dir)
    return sorted(
        file.relative_to(docs_dir).as_posix()
        for file, inside in _candidate_files(docs_dir)
        if not inside
    )


def _page_files(docs_dir: Path) -> list[tuple[str, PurePosixPath, Path]]:
    """(page path, relative path, file) for each page, one file per page, sorted by page."""
    chosen: dict[str, tuple[int, PurePosixPath, Path]] = {}
    for file, inside in _candidate_files(docs_dir):
        if not inside:
            continue  # reported by ``links_outside`` (the build summary lists them)
        rel = PurePosixPath(file.relative_to(docs_dir).as_posix())
        page = page_path_for(rel)
        if page is None:
            continue
        candidate = (_priority(rel), rel, file)
        if page not in chosen or candidate[:2] < chosen[page][:2]:
            chosen[page] = candidate
    return [(page, rel, file) for page, (_, rel, file) in sorted(chosen.items())]


def iter_keras_io_documents(
    docs_dir: Path, *, site_map: SiteMap | None = None
) -> Iterator[Document]:
    """One ``kind="page"`` document per keras.io page in ``docs_dir``, sorted by page path."""
    docs_dir = Path(docs_dir)
    version = docs_version(docs_dir)
    for page_path, _rel, file in _page_files(docs_dir):
        raw = file.read_text(encoding="utf-8", errors="replace")
        text = clean_markdown(render_template_tags(raw, page_path, site_map))
        page = site_map.get(page_path) if site_map is not None else None
        title = page.title if page is not None else (_first_heading(text) or _humanise(page_path))
        symbols = site_map.subtree_symbols(page_path) if site_map is not None else ()
        yield Document(
            doc_id=page_path,
            title=title,
            url=f"https://keras.io/{page_path}/",
            source=SOURCE,
            source_version=version,
            text=text,
            kind="page",
            symbols=symbols,
        )


def iter_site_map_symbol_documents(
    site_map: SiteMap, *, known_symbols: Collection[str], version: str
) -> Iterator[Document]:
    """A short stub document for each site-map symbol that no other source documents.

    The stub says only what the site map knows: where the symbol is documented and what
    else that page documents. It exists so the symbol's id and URL are retrievable.
    """
    known = set(known_symbols)
    seen: set[str] = set()
    for page in site_map.pages.values():
        for symbol in page.symbols:
            if symbol in known or symbol in seen:
                continue
            seen.add(symbol)
            home = site_map.page_for_symbol(symbol) or page
            url = site_map.symbol_url(symbol) or site_map.url_for_path(home.path)
            where = " › ".join(home.breadcrumb)
            lines = [
                f"# {symbol}",
                "",
                f"{home.title} — {where}. Documented on {url}."
                if where
                else f"{home.title}. Documented on {url}.",
            ]
            siblings = [s for s in home.symbols if s != symbol]
            if siblings:
                lines += ["", f"Also documented on this page: {', '.join(siblings)}."]
            yield Document(
                doc_id=symbol,
                title=symbol,
                url=url,
                source=SYMBOL_STUB_SOURCE,
                source_version=version,
                text="\n".join(lines) + "\n",
                kind="api",
                symbols=(symbol,),
            )
