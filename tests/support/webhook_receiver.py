"""A merchant's webhook receiver on a loopback port: records every request as it arrived.

Answers are scripted in order (`script(500, 500)`), then 200; `hold()` makes the next request
wait until `release()` (a worker killed mid-delivery), `answer_body` sets the body sent back.
Signatures are verified by the tests with the `standardwebhooks` library, not here.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def timestamp(self) -> int:
        return int(self.headers["webhook-timestamp"])


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script: deque[int] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._hold: threading.Event | None = None
        self.answer_body = b"ok"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    receiver._arrived.notify_all()
                    status = receiver._script.popleft() if receiver._script else 200
                    hold = receiver._hold
                    receiver._hold = None
                if hold is not None:
                    hold.wait(30)
                payload = receiver.answer_body
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def script(self, *statuses: int) -> None:
        with self._lock:
            self._script.extend(statuses)

    def hold(self) -> threading.Event:
        """The next request is answered only when the returned event is set."""
        event = threading.Event()
        with self._lock:
            self._hold = event
        return event

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        with self._lock:
            if not self._arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} of {count} requests arrived")
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """A receiver on loopback, with private targets allowed (only for this test)."""
    from stealth_recovery.core.settings import get_settings

    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
    get_settings.cache_clear()
    server = WebhookReceiver()
    yield server
    server.close()


_system_getaddrinfo = socket.getaddrinfo


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """The system resolver, with `names` answered as the given addresses (a test's DNS zone)."""

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return _system_getaddrinfo(names.get(host, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
