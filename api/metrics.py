"""Prometheus metrics: per-request counts and latency, upload bytes, and what is read at
scrape time (videos by status, queue depths)."""

import logging
import time

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from core.config import Settings
from store import queries
from store.db import session_scope
from store.schema import FAILED, PROCESSING, QUEUED, READY

log = logging.getLogger(__name__)


class Metrics:
    """Per-app registry, so several apps in one process (tests) do not collide."""

    def __init__(self, app: FastAPI):
        self.registry = CollectorRegistry()
        self.requests = Counter("chronoscope_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("chronoscope_http_request_duration_seconds",
                                 "HTTP request latency", ["method", "route"],
                                 registry=self.registry)
        self.upload_bytes = Counter("chronoscope_upload_bytes_total", "bytes uploaded",
                                    registry=self.registry)
        self.registry.register(_StateCollector(app))


class _StateCollector:
    """Read at scrape time: videos by status, and the depth of each queue (to size pools)."""

    def __init__(self, app: FastAPI):
        self.app = app

    def collect(self):
        settings: Settings = self.app.state.settings
        videos = GaugeMetricFamily("chronoscope_videos", "videos by status", labels=["status"])
        try:
            with session_scope(settings) as s:
                counts = queries.count_by_status(s)
            for st in (QUEUED, PROCESSING, READY, FAILED):
                videos.add_metric([st], counts.get(st, 0))
        except Exception:
            log.warning("metrics: database unavailable", exc_info=True)
        yield videos
        if settings.broker_url:
            queue = GaugeMetricFamily("chronoscope_queue_length", "messages waiting",
                                      labels=["queue"])
            try:
                from workers import broker
                for name, n in broker.queue_lengths(broker.producer(settings.broker_url)
                                                    ).items():
                    queue.add_metric([name], n)
            except Exception:
                log.warning("metrics: broker unavailable", exc_info=True)
            yield queue


class MetricsMiddleware:
    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            self.metrics.latency.labels(scope["method"], route).observe(
                time.perf_counter() - started)
