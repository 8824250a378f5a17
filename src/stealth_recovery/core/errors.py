"""Typed domain errors, mapped to HTTP once (`core.api.add_error_handlers`).

Each class carries its HTTP status and a stable, machine-readable `type` that the error body
repeats (`{"detail": …, "type": …}`). The classes here are the generic kinds; each domain
names its own errors as subclasses (`recovery.errors.AttemptNotFound`, `retry.policy.PolicyInvalid`
…), so callers tell errors apart by class, never by their message.
"""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    type = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    status_code = 404
    type = "not_found"


class Conflict(DomainError):
    status_code = 409
    type = "conflict"


class Gone(DomainError):
    status_code = 410
    type = "gone"


class Unauthorized(DomainError):
    status_code = 401
    type = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    type = "forbidden"


class InvalidInput(DomainError):
    """A rule on a field that a schema cannot express; names the field."""

    status_code = 422
    type = "invalid_input"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class RateLimited(DomainError):
    """Too many requests; `retry_after` (seconds) becomes the Retry-After header."""

    status_code = 429
    type = "rate_limited"

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    """A service this action needs (the queue's broker) does not answer; nothing was changed."""

    status_code = 503
    type = "service_unavailable"
