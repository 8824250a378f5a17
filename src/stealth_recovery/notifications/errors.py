"""How a provider call failed: worth a quick retry inside the step, or final."""

from __future__ import annotations


class SendError(Exception):
    """A provider refused or could not take a message; the text is what the log row keeps."""


class TransientSendError(SendError):
    """Rate limit, server error, timeout, refused or reset connection, SMTP 4xx: try again soon."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds the provider asked us to wait, when it said


class PermanentSendError(SendError):
    """The provider will never take this message as it is: fail (or bounce) the log row now."""

    def __init__(self, message: str, *, status: str = "failed") -> None:
        super().__init__(message)
        self.status = status  # "failed", or "bounced" when the recipient address is refused


class AmbiguousSendError(SendError):
    """The message was handed over and no answer came (timeout or hang-up after the end of SMTP
    DATA, or after the HTTP request was sent): it may have been accepted. Never resent."""


class HandOverRefused(Exception):
    """The engine withheld the message at the last moment: the attempt ended (paid, expired,
    cancelled), its step's lease passed to another worker, or the mark could not be written."""

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient  # True: try again later (e.g. the database was unreachable)
