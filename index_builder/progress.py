"""Progress as log lines, for builds whose output goes to a file (systemd, Docker, CI).

A progress bar there draws nothing useful, and a quiet build looks hung for minutes: instead
each phase logs when it starts, then every few seconds (done/total, share, rate), and when it
ends. Same factory shape as the CLI's progress bars (``index_builder.build.ProgressFactory``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("supportbot.progress")


class ProgressLines:
    def __init__(
        self,
        every_seconds: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self.every = every_seconds
        self.clock = clock
        self.log = logger

    def __call__(self, name: str, total: int | None) -> Callable[[int], None]:
        started = last = self.clock()
        done = 0
        if total is None:
            self.log.info("%s", name)  # a step without a count (publishing)
            return lambda _n: None
        self.log.info("%s: started, %d items", name, total)

        def advance(n: int) -> None:
            nonlocal done, last
            done += n
            now = self.clock()
            finished = done >= total
            if not finished and now - last < self.every:
                return
            last = now
            elapsed = now - started
            rate = f"{done / elapsed:.1f}/s" if elapsed > 0 else "-"
            share = f"{100 * done / total:.0f}%" if total else "100%"
            self.log.info(
                "%s: %d/%d (%s), %s%s",
                name,
                done,
                total,
                share,
                rate,
                f", done in {elapsed:.1f} s" if finished else "",
            )

        return advance
