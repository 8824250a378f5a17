"""The loopback SMTP sink (`tests.support.smtp.SmtpSink`) in a child process of its own.

In its own process the sink's CPU (parsing SMTP, holding each message for the latency) is not
taken from the worker being measured, and the worker's GIL does not slow the sink down.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


@dataclass(frozen=True)
class SinkStats:
    messages: int  # accepted so far
    recipients: int  # distinct recipients among the messages counted from `since`
    connections: int  # SMTP connections accepted so far


def _serve(latency: float, channel: Connection) -> None:
    from tests.support.smtp import SmtpSink

    sink = SmtpSink(latency=latency).start()
    channel.send(sink.port)
    while True:
        command, argument = channel.recv()
        if command == "stats":
            messages = sink.messages
            counted = messages[argument:]
            recipients = {r.lower() for m in counted for r in m.rcpt_tos}
            channel.send(
                SinkStats(
                    messages=len(messages),
                    recipients=len(recipients),
                    connections=sink.connections,
                )
            )
        elif command == "stop":
            sink.stop()
            channel.send(None)
            return


class SinkProcess:
    """Starts the sink in a spawned process; `port` is where it listens on 127.0.0.1."""

    host = "127.0.0.1"

    def __init__(self, *, latency: float) -> None:
        self.latency = latency
        self.port = 0
        context = multiprocessing.get_context("spawn")
        self._channel, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(latency, child), name="smtp-sink", daemon=True
        )

    def start(self) -> SinkProcess:
        self._process.start()
        if not self._channel.poll(30):
            self._process.kill()
            raise RuntimeError("the SMTP sink process did not start")
        self.port = int(self._channel.recv())
        return self

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def stats(self, *, since: int = 0) -> SinkStats:
        """Counts so far; `recipients` counts the distinct ones among messages[since:]."""
        self._channel.send(("stats", since))
        stats: SinkStats = self._channel.recv()
        return stats

    def stop(self) -> None:
        if self._process.is_alive():
            try:
                self._channel.send(("stop", None))
                self._channel.poll(10)
            finally:
                self._process.join(10)
                if self._process.is_alive():
                    self._process.kill()
                    self._process.join(5)

    def __enter__(self) -> SinkProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
