"""``supportbot index build`` and ``index status``: build and publish the search index,
show the published one; progress bars or progress lines while building."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.cli.loaders import settings_from_args

if TYPE_CHECKING:
    from bot.settings import Settings
    from index_builder.build import BuildReport

log = logging.getLogger("supportbot")


def cmd_index_build(args: argparse.Namespace) -> int:
    """Build the index (progress bars on a terminal, progress lines otherwise) and report."""
    from rich.console import Console

    from index_builder.build import build_index

    settings = _build_settings(args)
    console = Console(stderr=True)
    # Bars on a terminal; written to a file or pipe (systemd, Docker, CI), progress lines.
    interactive = console.is_terminal and sys.stdout.isatty()
    progress_factory, finish = _progress(
        console, enabled=not args.no_progress and interactive, lines=not args.no_progress
    )
    try:
        report = build_index(settings, progress=progress_factory, force=args.force)
    finally:
        finish()
    _print_build_report(report)
    return 0


def _build_settings(args: argparse.Namespace) -> Settings:
    """The settings with the build's flags applied over the environment and the TOML file."""
    overrides: dict[str, Any] = {
        "docs_dir": args.docs_dir,
        "site_map": args.site_map,
        "docs_git": args.docs_git,
    }
    if args.no_keras:
        overrides["include_keras_api"] = False
    settings = settings_from_args(args, **overrides)
    # A flag beats the environment: --docs-git replaces SUPPORTBOT_DOCS_DIR and vice versa.
    if args.docs_git and not args.docs_dir:
        settings = settings.model_copy(update={"docs_dir": None})
    elif args.docs_dir and not args.docs_git:
        settings = settings.model_copy(update={"docs_git": None})
    return settings


def _print_build_report(report: BuildReport) -> None:
    """What was published (or kept), per source, and what the reranker learnt."""
    from rich.console import Console

    out = Console()
    state = "published" if report.published else "unchanged (current version kept)"
    out.print(f"index {report.version}: {state}")
    for name, info in report.sources.items():
        out.print(f"  source {name} @ {info['version']}: {info['documents']} documents")
        outside = info.get("skipped_outside_docs") or []
        if outside:
            out.print(
                f"  skipped {len(outside)} link(s) resolving outside the docs folder "
                f"(not indexed): {', '.join(outside)}",
                markup=False,
                highlight=False,
            )
    out.print(
        f"  {report.documents} documents, {report.chunks} chunks; embedded {report.embedded}, "
        f"from cache {report.cached}; {report.seconds:.1f} s"
    )
    if report.reranker:
        r = report.reranker
        out.print(
            f"  reranker: learnt from {r.get('queries')} queries mined from the docs; "
            f"held-out MRR@10 {r.get('held_out_mrr_first_stage')} -> "
            f"{r.get('held_out_mrr_reranked')}"
        )
    elif report.published:
        out.print("  reranker: none (too few links in the docs to learn from): fusion ranking only")
    if report.confidence:
        from index_builder.confidence_training import describe

        out.print(f"  {describe(report.confidence)}")
    if report.path:
        out.print(f"  at {report.path}")


def _progress(
    console: Any, *, enabled: bool, lines: bool = False
) -> tuple[Callable[[str, int | None], Callable[[int], None]], Callable[[], None]]:
    """A progress factory and its finish: rich bars (``enabled``), progress lines in the log
    (``lines``), or one log line per stage."""
    if not enabled and lines:
        from index_builder.progress import ProgressLines
        from index_builder.progress import log as progress_log

        progress_log.setLevel(logging.INFO)  # shown without -v: this is the build's output
        return ProgressLines(), lambda: None
    if not enabled:

        def quiet(name: str, total: int | None) -> Callable[[int], None]:
            if total:
                log.info("%s: %d items", name, total)
            return lambda _n: None

        return quiet, lambda: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    bars.start()

    def factory(name: str, total: int | None) -> Callable[[int], None]:
        task = bars.add_task(name, total=total)
        if total is None:
            bars.update(task, total=1, completed=1)
        return lambda n: bars.advance(task, n)

    return factory, bars.stop


def cmd_index_status(args: argparse.Namespace) -> int:
    """Print the published index's manifest (exit 1 when none is published)."""
    from bot.retrieval.index import current_version, read_manifest

    settings = settings_from_args(args)
    version = current_version(settings.index_root)
    if version is None:
        print(
            f"no index published under {settings.index_root}; run `supportbot index build`",
            file=sys.stderr,
        )
        return 1
    manifest = read_manifest(settings.index_root / version)
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    print(f"current index: {version}  ({settings.index_root / version})")
    print(
        f"  built {manifest.get('built_at')} with {manifest.get('model')} "
        f"(dim {manifest.get('dim')}, "
        f"{manifest.get('dense_index')})"
    )
    print(f"  {manifest.get('documents')} documents, {manifest.get('chunks')} chunks")
    for name, info in manifest.get("sources", {}).items():
        print(f"  source {name} @ {info.get('version')}: {info.get('documents')} documents")
    return 0
