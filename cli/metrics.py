"""Prometheus metrics for `bertq metrics`: a collector that reads one database snapshot per scrape
(`bertq.db.metrics`), so the numbers are what the database says now, whichever process serves them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bertq.db.engine import sessions
from bertq.db.metrics import snapshot


class BertqCollector(Collector):
    def collect(self) -> Iterator[Any]:
        with sessions()() as session:
            now = snapshot(session)
        depth = GaugeMetricFamily("bertq_queue_depth", "Jobs QUEUED, per queue.", labels=["queue"])
        oldest = GaugeMetricFamily(
            "bertq_queue_oldest_age_seconds", "Age of the oldest QUEUED job, per queue.", labels=["queue"]
        )
        for queue, count in sorted(now.queue_depth.items()):
            depth.add_metric([queue], count)
            oldest.add_metric([queue], now.oldest_queued_seconds[queue])
        jobs = GaugeMetricFamily("bertq_jobs", "Jobs by kind and status.", labels=["kind", "status"])
        for (kind, status), count in sorted(now.jobs.items()):
            jobs.add_metric([kind, status], count)
        attempts = GaugeMetricFamily(
            "bertq_attempts", "Attempts by outcome (RUNNING: not ended yet).", labels=["outcome"]
        )
        for outcome, count in sorted(now.attempts.items()):
            attempts.add_metric([outcome], count)
        rows = GaugeMetricFamily("bertq_bulk_rows_per_second", "Rows per second of the running bulk-inference shards.")
        rows.add_metric([], now.bulk_rows_per_second)
        workers = GaugeMetricFamily("bertq_live_workers", "Live workers (registry), by device.", labels=["device"])
        for device, count in sorted(now.live_workers.items()):
            workers.add_metric([device], count)
        yield from (depth, oldest, jobs, attempts, rows, workers)


def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(BertqCollector())
    return registry


def serve(address: str, port: int) -> None:
    start_http_server(port, addr=address, registry=registry())
    while True:
        time.sleep(3600)
