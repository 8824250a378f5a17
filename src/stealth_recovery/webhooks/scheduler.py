"""Delivery without a broker: a thread in the API process, like the retry queue's embedded
scheduler, woken when events are committed and otherwise every WEBHOOK_SWEEP_SECONDS."""

from __future__ import annotations

import threading

import structlog

from stealth_recovery.core.settings import get_settings
from stealth_recovery.webhooks.delivery import deliver_due

log = structlog.get_logger(__name__)


class DeliveryLoop:
    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sr-webhooks", daemon=True)

    @classmethod
    def from_settings(cls) -> DeliveryLoop:
        return cls(get_settings().webhook_sweep_seconds)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                deliver_due()
            except Exception:
                # One bad pass never stops the loop; the lease brings claimed deliveries back.
                log.exception("webhook_delivery_pass_failed")
            self._wake.wait(self.interval_seconds)
