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
