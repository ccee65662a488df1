"""Pacing shared by the room worker's loops: retry backoff, and the stop signal they sleep on."""

from __future__ import annotations

import asyncio
import contextlib
import random

from bot.settings import Settings


class Backoff:
    """Capped exponential backoff with full jitter (half to all of the capped delay)."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(settings.backoff_initial_seconds, settings.backoff_max_seconds)

    def next_delay(self) -> float:
        # The exponent stops growing at the cap: a day-long outage must not overflow a float.
        capped = min(self.maximum, self.initial * (2.0 ** min(self.failures, 60)))
        self.failures += 1
        return capped * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class StopSignal:
    """Owns the worker's one stop flag. Every loop sleeps through :meth:`sleep`, so a stop
    (SIGTERM, or a main task ending) cuts each wait short instead of waiting it out."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    async def sleep(self, seconds: float) -> bool:
        """Sleep; True if a stop was requested meanwhile."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout=seconds)
        return self._event.is_set()
