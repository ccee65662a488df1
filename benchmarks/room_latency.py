"""Room round trip: a question sent in a Matrix room until its reply arrives, vs the bare path.

One throw-away Synapse on 127.0.0.1 (``tests/synapse_server.py``), one real bot subprocess
(``python -m bot run``) on a copy of the published index, one user. For each question, one at
a time:

* room — from just before the user's ``PUT /send`` to the moment the user's own ``/sync``
         long-poll (``timeout=30000``) returns the bot's ``m.room.message`` whose
         ``m.relates_to.m.in_reply_to.event_id`` is the question. The bot runs with its default
         long-poll sync (not the tests' short one), reply threshold 0 (every question gets a
         reply), no cooldown and a high per-room rate;
* bare — in this process, after the room pass (bot and Synapse stopped): the same index and
         model, ``Retriever.search(text, k=10)`` + ``compose_reply(...)`` on exactly the text
         the bot answers (the message minus the mention) — the work behind one reply.

A subprocess bot cannot be interleaved with the in-process path, so the bare pass runs right
after the room pass. The difference is what the room adds: the send, the homeserver's
delivery to the bot's sync, the bot's queue and database writes, the reply's send and the
delivery to the user's sync.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    SHARED,
    HelpFormatter,
    add_common_args,
    machine_info,
    machine_markdown,
    markdown_table,
    progress,
    ratio,
    run_main,
    run_started,
    setup,
    summarize,
    verdict,
    write_json,
)

BOT_LOCALPART = "keras-bot"
USER_LOCALPART = "alice"
SYNC_TIMEOUT_MS = 30_000  # the user's long-poll, like a real client
K = 10  # documents retrieved per question: what `supportbot run` asks for
# The bot's per-event log line: "event <id> in <room> from <user>: <outcome> (<s> s)".
_HANDLED = re.compile(r"event (\S+) in \S+ from \S+: (\S+) \((\d+(?:\.\d+)?) s\)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].rstrip("."),
        epilog="Prints a Markdown table to stdout. Needs Synapse (`make synapse`). Example: "
        "python benchmarks/room_latency.py --data-dir /tmp/supportbot-bench/data --n 100 "
        "--json /tmp/room_latency.json",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO / "data",
        help="data dir whose indexes/CURRENT is the index the bot answers from",
    )
    parser.add_argument(
        "--questions",
        type=Path,
        default=SHARED / "eval" / "questions-dev.jsonl",
        help="questions JSONL (field 'question'); cycled up to --n",
    )
    parser.add_argument("--n", type=int, default=100, help="timed questions (at least 1)")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed questions through both paths first"
    )
    parser.add_argument(
        "--reply-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="give up on one question's reply after S seconds (counted as missing)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=5.0,
        metavar="S",
        help="after the last reply, keep syncing S seconds to catch late or duplicate replies",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


# -- the bot subprocess ------------------------------------------------------------------------


class BotProcess:
    """`python -m bot run` with its own data dir and log file."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.log_path = data_dir / "bot.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"],
                cwd=self.data_dir,  # no stray .env or supportbot.toml from the caller's cwd
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise SystemExit(
                f"error: the bot exited with {self.proc.returncode}:\n{self.log()[-3000:]}"
            )

    def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return
            self.check_alive()
            time.sleep(0.2)
        raise SystemExit(
            f"error: no {needle!r} in the bot log after {timeout:.0f} s:\n{self.log()[-3000:]}"
        )

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def bot_env(
    settings: Any, data_dir: Path, homeserver: str, bot: Any, room_id: str
) -> dict[str, str]:
    # The caller's SUPPORTBOT_* (database URL, config file, ...) never reach the bot; what the
    # answer depends on is passed explicitly, from the same settings the bare pass uses.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update(
        {
            "SUPPORTBOT_DATA_DIR": str(data_dir),
            "SUPPORTBOT_DEVICE": settings.device,
            "SUPPORTBOT_WEB_PORT": "0",
            "SUPPORTBOT_EMBED_BATCH_SIZE": str(settings.embed_batch_size),
            "SUPPORTBOT_MAX_SOURCES": str(settings.max_sources),
            "SUPPORTBOT_MATRIX_HOMESERVER": homeserver,
            "SUPPORTBOT_MATRIX_USER_ID": bot.user_id,
            "SUPPORTBOT_MATRIX_ACCESS_TOKEN": bot.access_token,
            "SUPPORTBOT_MATRIX_ROOMS": room_id,
            "SUPPORTBOT_REPLY_THRESHOLD": "0.0",  # every question gets a reply
            "SUPPORTBOT_USER_COOLDOWN_SECONDS": "0",
            "SUPPORTBOT_ROOM_REPLIES_PER_MINUTE": "1000000",
            # SUPPORTBOT_SYNC_TIMEOUT_MS is left at its default: a realistic 30 s long-poll.
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def copy_index(src_root: Path, dst_root: Path) -> str:
    """Copy the current version (and the CURRENT pointer) into a fresh data dir."""
    from bot.retrieval.index import current_version

    version = current_version(src_root)
    if version is None:
        raise SystemExit(f"error: no published index under {src_root} (no CURRENT)")
    dst_root.mkdir(parents=True)
    shutil.copytree(src_root / version, dst_root / version)
    shutil.copy2(src_root / "CURRENT", dst_root / "CURRENT")
    return version


_VERSION_SCRIPT = "from importlib.metadata import version; print(version('matrix-synapse'))"


def synapse_version(python: Path) -> str:
    try:
        done = subprocess.run(
            [str(python), "-c", _VERSION_SCRIPT],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip() or "?"


# -- the user's side -----------------------------------------------------------------------------


class UserSync:
    """The user's /sync long-poll on one room; collects the bot's replies as they arrive."""

    def __init__(self, server: Any, user: Any, room_id: str, bot_id: str) -> None:
        self.server = server
        self.user = user
        self.room_id = room_id
        self.bot_id = bot_id
        self.filter = json.dumps(
            {
                "presence": {"types": []},
                "account_data": {"types": []},
                "room": {
                    "rooms": [room_id],
                    "timeline": {"limit": 100, "types": ["m.room.message"]},
                    "state": {"types": []},
                    "ephemeral": {"types": []},
                    "account_data": {"types": []},
                },
            }
        )
        self.since: str | None = None
        self.replies: dict[str, list[str]] = defaultdict(list)  # question -> reply event ids
        self.arrived: dict[str, float] = {}  # question -> perf_counter of its first reply
        self.limited = 0
        self.polls = 0

    def poll(self, timeout_ms: int) -> None:
        query: dict[str, str | int] = {"filter": self.filter, "timeout": timeout_ms}
        if self.since is not None:
            query["since"] = self.since
        answer = self.server.request(
            "GET",
            "/_matrix/client/v3/sync",
            user=self.user,
            query=query,
            timeout=timeout_ms / 1000 + 30,
        )
        now = time.perf_counter()
        self.polls += 1
        self.since = answer["next_batch"]
        room = answer.get("rooms", {}).get("join", {}).get(self.room_id, {})
        timeline = room.get("timeline", {})
        if timeline.get("limited") and self.polls > 1:
            self.limited += 1
        for event in timeline.get("events", []):
            if event.get("sender") != self.bot_id or event.get("type") != "m.room.message":
                continue
            relates = event.get("content", {}).get("m.relates_to", {})
            target = relates.get("m.in_reply_to", {}).get("event_id")
            if isinstance(target, str) and event["event_id"] not in self.replies[target]:
                self.replies[target].append(event["event_id"])
                self.arrived.setdefault(target, now)


def all_bot_replies(server: Any, user: Any, room_id: str, bot_id: str) -> dict[str, list[str]]:
    """Every bot reply in the room, from /messages (paginated): question -> reply ids."""
    out: dict[str, list[str]] = defaultdict(list)
    token: str | None = None
    for _ in range(10_000):  # bounded: 100 events a page
        query: dict[str, str | int] = {"dir": "b", "limit": 100}
        if token is not None:
            query["from"] = token
        page = server.request(
            "GET",
            f"/_matrix/client/v3/rooms/{server._q(room_id)}/messages",
            user=user,
            query=query,
        )
        for event in page.get("chunk", []):
            if event.get("sender") == bot_id and event.get("type") == "m.room.message":
                relates = event.get("content", {}).get("m.relates_to", {})
                target = relates.get("m.in_reply_to", {}).get("event_id")
                if isinstance(target, str):
                    out[target].append(event["event_id"])
        if not page.get("chunk") or not page.get("end") or page.get("end") == token:
            break
        token = page["end"]
    return out


# -- benchmark -------------------------------------------------------------------------------------


def room_pass(
    args: argparse.Namespace,
    settings: Any,
    warm: list[str],
    timed: list[str],
    work: Path,
) -> dict[str, Any]:
    from tests.synapse_server import SynapseServer, synapse_skip_reason

    reason = synapse_skip_reason()
    if reason:
        raise SystemExit(f"error: {reason}")
    server = SynapseServer(work / "synapse")
    bot: BotProcess | None = None
    try:
        t0 = time.perf_counter()
        server.start()
        synapse_start_s = time.perf_counter() - t0
        bot_user = server.register(BOT_LOCALPART)
        user = server.register(USER_LOCALPART)
        room_id = server.create_room(user)
        bot_data = work / "bot"
        bot_data.mkdir()
        version = copy_index(settings.index_root, bot_data / "indexes")
        proc = BotProcess(bot_data, bot_env(settings, bot_data, server.base_url, bot_user, room_id))
        bot = proc
        progress(args, f"Synapse on {server.base_url}; starting the bot on index {version}")
        t0 = time.perf_counter()
        proc.start()
        proc.wait_for_log("listening", timeout=300)
        bot_start_s = time.perf_counter() - t0

        sync = UserSync(server, user, room_id, bot_user.user_id)
        sync.poll(0)  # the starting point: everything before it is history

        def ask(text: str) -> tuple[str, float, float, float | None]:
            body = f"{bot_user.localpart}: {text}"
            t_send = time.perf_counter()
            event_id = server.send_text(user, room_id, body, mentions=[bot_user.user_id])
            t_sent = time.perf_counter()
            deadline = t_send + args.reply_timeout
            while event_id not in sync.arrived and time.perf_counter() < deadline:
                proc.check_alive()
                left_ms = int((deadline - time.perf_counter()) * 1000)
                sync.poll(max(0, min(SYNC_TIMEOUT_MS, left_ms)))
            arrived = sync.arrived.get(event_id)
            return event_id, t_send, t_sent, arrived

        progress(args, f"room pass: {len(warm)} warm-up + {len(timed)} timed questions")
        for text in warm:
            ask(text)
        asked: list[str] = []
        room_s: list[float] = []
        send_s: list[float] = []
        missing = 0
        for i, text in enumerate(timed):
            event_id, t_send, t_sent, arrived = ask(text)
            asked.append(event_id)
            send_s.append(t_sent - t_send)
            if arrived is None:
                missing += 1
                progress(args, f"question {i + 1}: no reply within {args.reply_timeout:.0f} s")
            else:
                room_s.append(arrived - t_send)
            if args.verbose and (i + 1) % 10 == 0:
                progress(args, f"{i + 1}/{len(timed)} questions")
        # Late or duplicate replies would show up now.
        drain_end = time.perf_counter() + args.drain
        while (left := drain_end - time.perf_counter()) > 0:
            sync.poll(int(left * 1000))
        in_room = all_bot_replies(server, user, room_id, bot_user.user_id)
        exit_code = proc.stop()
        bot_log = proc.log()
    finally:
        if bot is not None and bot.alive():
            bot.stop()
        server.stop()

    handled: dict[str, float] = {}
    for m in _HANDLED.finditer(bot_log):
        handled[m.group(1)] = float(m.group(3))
    handling_s = [handled[e] for e in asked if e in handled]
    timed_set = set(asked)
    return {
        "synapse_start_s": synapse_start_s,
        "bot_start_s": bot_start_s,
        "index_version": version,
        "room_s": room_s,
        "send_s": send_s,
        "bot_handling_s": handling_s,
        "asked": len(asked),
        "replies_arrived": len(asked) - missing,
        "missing": missing,
        "sync_twice_replied": sum(1 for e in asked if len(sync.replies.get(e, [])) > 1),
        "room_replies_timed": sum(len(v) for k, v in in_room.items() if k in timed_set),
        "room_twice_replied": sum(1 for v in in_room.values() if len(v) > 1),
        "room_replies_total": sum(len(v) for v in in_room.values()),
        "room_questions_total": len(warm) + len(timed),
        "limited_syncs": sync.limited,
        "user_syncs": sync.polls,
        "bot_exit_code": exit_code,
        "rate_limit_hits": len(server.rate_limit_hits),
    }


def bare_pass(
    args: argparse.Namespace, settings: Any, warm: list[str], timed: list[str]
) -> dict[str, Any]:
    from bot.answering.reply import compose_reply
    from bot.retrieval.encoder import Encoder
    from bot.retrieval.index import load_index
    from bot.retrieval.search import Retriever

    t0 = time.perf_counter()
    index = load_index(settings.index_root)
    load_index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    encoder = Encoder(index.model, device=settings.device, batch_size=settings.embed_batch_size)
    load_model_s = time.perf_counter() - t0
    retriever = Retriever(index, encoder)

    def full(text: str) -> Any:
        result = retriever.search(text, k=K)
        return compose_reply(
            result,
            threshold=0.0,  # as the bot under test
            max_sources=settings.max_sources,
            index_version=index.version,
        )

    progress(args, f"bare pass: {len(warm)} warm-up + {len(timed)} timed questions")
    for text in warm:
        full(text)
    bare_s: list[float] = []
    for text in timed:
        t0 = time.perf_counter()
        full(text)
        bare_s.append(time.perf_counter() - t0)
    return {
        "bare_s": bare_s,
        "load_index_s": load_index_s,
        "load_model_s": load_model_s,
        "device": encoder.device,
        "index": {
            "data_dir": str(args.data_dir),
            "version": index.version,
            "model": index.model,
            "documents": len(index.docs),
            "chunks": len(index.chunks),
            "dense_index": index.manifest.get("dense_index"),
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bot.answering.policy import BotIdentity
    from bot.evaluation.questions import load_questions
    from bot.settings import load_settings
    from tests.synapse_server import synapse_python

    settings = load_settings(data_dir=args.data_dir, device=args.device)
    if args.torch_threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)  # the bot's torch, too
    questions = [q.question for q in load_questions(args.questions) if q.question.strip()]
    if not questions:
        raise SystemExit(f"error: no questions in {args.questions}")
    progress(args, f"{len(questions)} questions from {args.questions}")
    timed = [questions[i % len(questions)] for i in range(args.n)]
    warm = [questions[-1 - i % len(questions)] for i in range(args.warmup)]

    with tempfile.TemporaryDirectory(prefix="room-latency-") as tmp:
        room = room_pass(args, settings, warm, timed, Path(tmp))
    # Exactly what the bot answers: the message minus the mention.
    me = BotIdentity(f"@{BOT_LOCALPART}:localhost")
    strip = [me.strip_mention(f"{BOT_LOCALPART}: {t}") for t in timed]
    bare = bare_pass(
        args, settings, [me.strip_mention(f"{BOT_LOCALPART}: {t}") for t in warm], strip
    )

    room_stats = summarize(room["room_s"])
    bare_stats = summarize(bare["bare_s"])
    n = args.n
    ok_count = room["replies_arrived"] == n and room["room_replies_timed"] == n
    ok_dupes = room["sync_twice_replied"] == 0 and room["room_twice_replied"] == 0
    return {
        "benchmark": "room_latency",
        "index": bare["index"],
        "setup": {
            "questions_file": str(args.questions),
            "questions": len(questions),
            "timed": n,
            "warmup": args.warmup,
            "k": K,
            "device": bare["device"],
            "bot_sync_timeout_ms": "default (30000)",
            "user_sync_timeout_ms": SYNC_TIMEOUT_MS,
            "synapse_version": synapse_version(synapse_python()),
            "synapse_start_s": room["synapse_start_s"],
            "bot_start_s": room["bot_start_s"],
            "load_index_s": bare["load_index_s"],
            "load_model_s": bare["load_model_s"],
            "order": "room pass first (bot subprocess), then the bare pass in this process",
        },
        "results": {
            "room_round_trip": room_stats,
            "user_send": summarize(room["send_s"]),
            "bot_handling": summarize(room["bot_handling_s"]),
            "bare_path": bare_stats,
        },
        "comparison": {
            "p50_diff_ms": room_stats["p50_ms"] - bare_stats["p50_ms"],
            "p99_diff_ms": room_stats["p99_ms"] - bare_stats["p99_ms"],
            "mean_diff_ms": room_stats["mean_ms"] - bare_stats["mean_ms"],
            "p50_ratio": ratio(room_stats["p50_ms"], bare_stats["p50_ms"]),
            "p99_ratio": ratio(room_stats["p99_ms"], bare_stats["p99_ms"]),
            "mean_ratio": ratio(room_stats["mean_ms"], bare_stats["mean_ms"]),
        },
        "checks": {
            "replies_arrived": room["replies_arrived"],
            "replies_in_room_for_timed": room["room_replies_timed"],
            "expected": n,
            "questions_with_two_replies_sync": room["sync_twice_replied"],
            "questions_with_two_replies_room": room["room_twice_replied"],
            "room_replies_total": room["room_replies_total"],
            "room_questions_total": room["room_questions_total"],
            "limited_user_syncs": room["limited_syncs"],
            "user_syncs": room["user_syncs"],
            "bot_exit_code": room["bot_exit_code"],
            "synapse_rate_limit_hits": room["rate_limit_hits"],
            "all_replied": ok_count,
            "no_duplicates": ok_dupes,
            "pass": bool(ok_count and ok_dupes),
        },
        "samples_ms": {
            "room_round_trip": [s * 1000 for s in room["room_s"]],
            "user_send": [s * 1000 for s in room["send_s"]],
            "bot_handling": [s * 1000 for s in room["bot_handling_s"]],
            "bare_path": [s * 1000 for s in bare["bare_s"]],
        },
    }


def report(data: dict[str, Any]) -> str:
    res = data["results"]
    idx = data["index"]
    s = data["setup"]
    cmp_ = data["comparison"]
    checks = data["checks"]
    labels = [
        ("room_round_trip", "room: send → reply seen in the user's `/sync`"),
        ("user_send", "part of room: the user's `PUT /send` returns"),
        ("bot_handling", "part of room: bot handling (its log, 10 ms steps)"),
        ("bare_path", "bare: `Retriever.search` + `compose_reply` (in-process)"),
    ]
    rows = [
        (label, res[key]["n"], res[key]["p50_ms"], res[key]["p99_ms"], res[key]["mean_ms"])
        for key, label in labels
    ]
    n = checks["expected"]
    out = [
        "## Room latency",
        "",
        machine_markdown(data["machine"]),
        "",
        f"Index `{idx['version']}` ({idx['documents']:,} documents, {idx['chunks']:,} chunks, "
        f"{idx['dense_index'] or 'dense'} index, model `{idx['model']}`); Synapse "
        f"{s['synapse_version']} on 127.0.0.1 (SQLite, rate limits off); one bot subprocess "
        f"(default 30 s long-poll sync, reply threshold 0, k = {s['k']}, device "
        f"{s['device']}); {s['timed']} timed questions, one at a time, after {s['warmup']} "
        f"warm-up ({s['questions']} eval questions, cycled). The user receives replies through "
        f"its own `/sync` long-poll (timeout {s['user_sync_timeout_ms']} ms). The bare pass ran "
        "right after the room pass, in the benchmark process, with Synapse and the bot "
        "stopped (a subprocess bot cannot be interleaved). Start-up, not timed: Synapse "
        f"{s['synapse_start_s']:.1f} s, bot to listening {s['bot_start_s']:.1f} s; bare pass "
        f"model load {s['load_model_s']:.1f} s, index load {s['load_index_s']:.1f} s.",
        "",
        markdown_table(("path", "n", "p50 ms", "p99 ms", "mean ms"), rows),
        "",
        markdown_table(
            ("room vs bare", "p50", "p99", "mean"),
            [
                (
                    "room − bare (ms)",
                    cmp_["p50_diff_ms"],
                    cmp_["p99_diff_ms"],
                    cmp_["mean_diff_ms"],
                ),
                (
                    "room / bare",
                    f"{cmp_['p50_ratio']:.2f}x",
                    f"{cmp_['p99_ratio']:.2f}x",
                    f"{cmp_['mean_ratio']:.2f}x",
                ),
            ],
        ),
        "",
        markdown_table(
            ("check", "measured", "expected", "result"),
            [
                (
                    "replies seen by the user's sync",
                    checks["replies_arrived"],
                    n,
                    verdict(checks["replies_arrived"] == n),
                ),
                (
                    "bot replies in the room (`/messages`) to the timed questions",
                    checks["replies_in_room_for_timed"],
                    n,
                    verdict(checks["replies_in_room_for_timed"] == n),
                ),
                (
                    "questions with two or more replies (sync / room)",
                    f"{checks['questions_with_two_replies_sync']} / "
                    f"{checks['questions_with_two_replies_room']}",
                    "0 / 0",
                    verdict(checks["no_duplicates"]),
                ),
            ],
        ),
        "",
        f"All replies in the room: {checks['room_replies_total']} for "
        f"{checks['room_questions_total']} questions (warm-up included); "
        f"{checks['user_syncs']} user syncs, {checks['limited_user_syncs']} limited; "
        f"bot exit code {checks['bot_exit_code']}; "
        f"{checks['synapse_rate_limit_hits']} HTTP 429s.",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup(args)
    started = run_started()
    data = run(args)
    data["machine"] = machine_info(data["setup"]["device"], started)
    print(report(data))
    write_json(args.json, data)
    return 0 if data["checks"]["pass"] else 1


if __name__ == "__main__":
    run_main(main)
