"""Prometheus metrics, exposed at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "stealth_recovery_messages_total",
    "Reminder messages by channel and outcome status.",
    ["channel", "status"],
)
REMINDER_STEPS = Counter(
    "stealth_recovery_reminder_steps_total",
    "Reminder steps finished, by what happened to the attempt.",
    ["outcome"],
)
CLAIM_SECONDS = Histogram(
    "stealth_recovery_claim_seconds",
    "Time to claim one batch of due attempts.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SEND_SECONDS = Histogram(
    "stealth_recovery_send_seconds",
    "Time for one provider call, including in-step transient retries.",
    ["channel"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LATE_PAYMENTS = Counter(
    "stealth_recovery_payments_after_end_total",
    "Payments received for attempts that had already ended (cancelled or expired).",
)
SECOND_PAYMENTS = Counter(
    "stealth_recovery_second_payments_total",
    "Second payments received for attempts already paid (the merchant should refund one).",
)
QUEUE_DEPTH = Gauge(
    "stealth_recovery_queue_depth",
    "Reminder steps due now and not claimed (counted when /metrics is scraped).",
)
HTTP_REQUESTS = Counter(
    "stealth_recovery_http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "stealth_recovery_http_request_seconds",
    "HTTP request latency by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
