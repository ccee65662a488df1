"""Prometheus metrics of the running bot, on a registry of its own (tests make fresh ones)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "supportbot_events", "Room events persisted, by type", ["type"], registry=r
        )
        self.outcomes = Counter(
            "supportbot_handled", "Events handled, by outcome", ["outcome"], registry=r
        )
        self.replies_out = Counter("supportbot_replies", "Replies posted to rooms", registry=r)
        self.answer_seconds = Histogram(
            "supportbot_answer_seconds",
            "Time to handle one event (retrieval, reply, send)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.errors = Counter("supportbot_errors", "Errors, by kind", ["kind"], registry=r)
        # Several workers: an event this worker meant to handle was claimed or handled by
        # another one first (normal when workers share a backlog; never a double answer).
        self.claims_lost = Counter(
            "supportbot_claims_lost",
            "Events left to another worker that had claimed or handled them first",
            registry=r,
        )
        self.claims_taken_over = Counter(
            "supportbot_claims_taken_over",
            "Events taken over from a worker whose lease ran out (it died or stalled)",
            registry=r,
        )
        self.build_seconds = Histogram(
            "supportbot_index_build_seconds",
            "Index builds run by the bot",
            ["trigger", "result"],
            buckets=(1, 5, 15, 60, 300, 900, 3600),
            registry=r,
        )
        self.last_sync = Gauge(
            "supportbot_last_sync_timestamp_seconds", "When /sync last succeeded", registry=r
        )
        self.queue_depth = Gauge(
            "supportbot_queue_depth", "Events waiting to be handled", registry=r
        )
        self.sync_lag = Gauge(
            "supportbot_sync_lag_seconds", "Seconds since /sync last succeeded", registry=r
        )
        self.index_age = Gauge(
            "supportbot_index_age_seconds", "Age of the index being served", registry=r
        )
        self.index_documents = Gauge(
            "supportbot_index_documents", "Documents in the index being served", registry=r
        )
        self.index_chunks = Gauge(
            "supportbot_index_chunks", "Chunks in the index being served", registry=r
        )
        self._last_sync_monotonic: float | None = None
        self.sync_lag.set_function(self._lag)

    def _lag(self) -> float:
        if self._last_sync_monotonic is None:
            return float("nan")
        return time.monotonic() - self._last_sync_monotonic

    def synced(self) -> None:
        self._last_sync_monotonic = time.monotonic()
        self.last_sync.set_to_current_time()

    def seconds_since_sync(self) -> float | None:
        if self._last_sync_monotonic is None:
            return None
        return time.monotonic() - self._last_sync_monotonic

    def watch_queue(self, size: Callable[[], int]) -> None:
        self.queue_depth.set_function(lambda: float(size()))

    def watch_index(
        self, age: Callable[[], float], documents: Callable[[], int], chunks: Callable[[], int]
    ) -> None:
        self.index_age.set_function(age)
        self.index_documents.set_function(lambda: float(documents()))
        self.index_chunks.set_function(lambda: float(chunks()))
