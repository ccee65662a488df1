"""A keras-io checkout the builder keeps itself: cloned once into the data dir, then pulled.

``supportbot index build --docs-git URL`` (or ``SUPPORTBOT_DOCS_GIT``) clones the repository
into ``<data_dir>/docs/keras-io`` and, on later builds and the nightly re-index, fast-forwards
it with ``git pull --ff-only``. Only what the index reads is checked out (guides, examples'
markdown, templates, the site-map scripts): the real repository is ~1 GB, mostly images and
notebooks, and a partial clone skips their blobs where the server allows it.

URLs may carry credentials (``https://user:token@host/...``); they never reach a message:
every error and log line shows the URL with its user part replaced, and git's own output is
scrubbed the same way before it is quoted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bot.errors import BuildError

log = logging.getLogger(__name__)

#: Where the checkout lives inside the data dir.
CHECKOUT_SUBDIR = Path("docs") / "keras-io"

#: What the index reads (see ``keras_io._page_files`` and ``site_map.find_site_map``).
SPARSE_PATTERNS = (
    "/guides/md/",
    "/examples/*/md/",
    "/templates/",
    "/scripts/*_master.py",
    "/site_map.json",
    "/LICENSE",
)

GIT_TIMEOUT_SECONDS = 1800  # a first clone of the real repository over a slow link

_USERINFO_IN_TEXT = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact_url(url: str) -> str:
    """``url`` without its user/password part: ``https://***@github.com/...``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO_IN_TEXT.sub(r"\1***@", url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _scrub(text: str, url: str) -> str:
    """Git output with any credentials removed, cut to its last meaningful line."""
    text = text.replace(url, redact_url(url))
    text = _USERINFO_IN_TEXT.sub(r"\1***@", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # git prints "hint:" lines after the error itself; the "fatal:"/"error:" line says why.
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "no output"


def checkout_dir(data_dir: Path) -> Path:
    """``<data_dir>/docs/keras-io``."""
    return Path(data_dir) / CHECKOUT_SUBDIR


def _git(args: list[str], *, url: str, what: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",  # a private URL without credentials fails, never waits
        "GIT_ASKPASS": "",
        "LC_ALL": "C",  # messages we parse ("fatal: ...") in one language
    }
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise BuildError("--docs-git needs the git command, which is not installed") from None
    except subprocess.TimeoutExpired:
        raise BuildError(
            f"{what} {redact_url(url)}: git gave no result in {GIT_TIMEOUT_SECONDS} s"
        ) from None
    except OSError as exc:
        raise BuildError(f"{what} {redact_url(url)}: cannot run git: {exc}") from None
    if proc.returncode != 0:
        detail = _scrub(proc.stderr or proc.stdout, url)
        raise BuildError(f"{what} {redact_url(url)} failed: {detail}")
    return proc.stdout


def _origin(dest: Path, url: str) -> str:
    return _git(
        ["-C", str(dest), "config", "--get", "remote.origin.url"],
        url=url,
        what="reading the docs checkout's remote",
    ).strip()


def _clone(url: str, dest: Path) -> None:
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left over from an interrupted clone
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        _git(
            [
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--filter=blob:none",
                "--sparse",
                url,
                str(partial),
            ],
            url=url,
            what="git clone",
        )
        _git(
            ["-C", str(partial), "sparse-checkout", "set", "--no-cone", *SPARSE_PATTERNS],
            url=url,
            what="sparse checkout of",
        )
    except BuildError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    # Renamed only when complete: an interrupted clone never looks like a checkout.
    partial.rename(dest)


def sync_docs_checkout(url: str, data_dir: Path, *, update: bool = True) -> Path:
    """Clone ``url`` into the data dir if it is not there yet; with ``update``, pull it.

    Returns the checkout's folder. Raises ``BuildError`` (one line, no credentials) when git
    fails, when the folder exists but is not a checkout, or when it is a checkout of another
    repository.
    """
    url = url.strip()
    if not url:
        raise BuildError("--docs-git: the URL is empty")
    dest = checkout_dir(data_dir)
    if not dest.exists():
        log.info("cloning %s into %s", redact_url(url), dest)
        _clone(url, dest)
        return dest
    if not (dest / ".git").exists():
        raise BuildError(
            f"{dest} exists but is not a git checkout: remove it to let --docs-git clone there"
        )
    origin = _origin(dest, url)
    if redact_url(origin) != redact_url(url):
        raise BuildError(
            f"{dest} is a checkout of {redact_url(origin)}, not {redact_url(url)}: "
            "remove it to clone the new URL"
        )
    if update:
        log.info("updating %s (git pull --ff-only)", dest)
        _git(["-C", str(dest), "pull", "--ff-only", "--quiet"], url=url, what="git pull of")
    return dest
