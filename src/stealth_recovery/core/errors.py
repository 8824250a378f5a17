"""Typed domain errors, mapped to HTTP once in `stealth_recovery.app`."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class Gone(DomainError):
    status_code = 410


class Unauthorized(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class InvalidInput(DomainError):
    """A rule on a field that a schema cannot express; names the field."""

    status_code = 422

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class RateLimited(DomainError):
    """Too many requests; `retry_after` (seconds) becomes the Retry-After header."""

    status_code = 429

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    """A service this action needs (the queue's broker) does not answer; nothing was changed."""

    status_code = 503
