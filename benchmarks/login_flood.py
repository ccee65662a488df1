"""Sign-in under a flood: what parallel wrong passwords for one user cost, and whether the
rest of the dashboard keeps answering meanwhile.

Serves ``build_app`` on 127.0.0.1 (aiohttp's TestServer, real HTTP) over a temporary SQLite
database with one user, at the default scrypt cost (N=2^17) unless ``--log2n`` says otherwise.
Sends ``--parallel`` wrong passwords for that user at once, while a signed-in browser keeps
loading ``/queue`` (a page that needs the database); reports the statuses, how many passwords
were actually checked, the flood's wall time and the slowest ``/queue`` during it. Also times
one scrypt hash at N=2^14 (the old default) and at N=2^17, median of ``--hashes``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.web import auth, passwords  # noqa: E402
from tests.web.web_helpers import add_user, csrf_in, make_context, signed_in  # noqa: E402


def hash_seconds(log2n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        hashlib.scrypt(
            b"correct horse", salt=b"s" * 16, n=2**log2n, r=8, p=1, maxmem=2**29, dklen=32
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def flood(data: Path, parallel: int, max_failures: int) -> dict[str, Any]:
    ctx = make_context(data, settings={"login_max_failures": max_failures})
    add_user(ctx)
    add_user(ctx, "otto")
    checked: list[int] = []
    lock = threading.Lock()
    real = passwords.verify_password

    def counting(password: str, encoded: str) -> bool:
        with lock:
            checked.append(1)
        return real(password, encoded)

    async with (
        TestClient(TestServer(auth_app(ctx))) as attacker,
        TestClient(TestServer(auth_app(ctx))) as maintainer,
    ):
        await signed_in(maintainer, "otto")
        auth.verify_password = counting  # type: ignore[assignment]
        page = await attacker.get("/login")
        form = {"csrf_token": csrf_in(await page.text()), "name": "maria", "password": "nope!"}
        stop = asyncio.Event()
        queue_times: list[float] = []

        async def browse() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                response = await maintainer.get("/queue")
                await response.read()
                queue_times.append(time.perf_counter() - start)

        browsing = asyncio.ensure_future(browse())
        start = time.perf_counter()
        responses = await asyncio.gather(
            *(attacker.post("/login", data=form, allow_redirects=False) for _ in range(parallel))
        )
        wall = time.perf_counter() - start
        stop.set()
        await browsing
    ctx.db.close()
    return {
        "statuses": dict(sorted(Counter(r.status for r in responses).items())),
        "checked": len(checked),
        "wall_s": round(wall, 2),
        "queue_max_s": round(max(queue_times), 3) if queue_times else None,
        "queue_loads": len(queue_times),
    }


def auth_app(ctx: Any) -> Any:
    from bot.web.app import build_app

    return build_app(ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--max-failures", type=int, default=5)
    parser.add_argument("--log2n", type=int, default=17, help="scrypt cost for the flood")
    parser.add_argument("--hashes", type=int, default=5)
    args = parser.parse_args()
    # (the name as this branch spells it; older code has no such variable and ignores it)
    os.environ[getattr(passwords, "TEST_COST_ENV", "SUPPORTBOT_TEST_SCRYPT_N")] = str(2**args.log2n)
    for log2n in (14, 17):
        print(f"scrypt N=2^{log2n}, r=8, p=1: {hash_seconds(log2n, args.hashes):.3f} s per hash")
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(flood(Path(tmp), args.parallel, args.max_failures))
    print(f"{args.parallel} parallel wrong passwords (limit {args.max_failures}): {result}")


if __name__ == "__main__":
    main()
