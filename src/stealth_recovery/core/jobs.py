"""Work handed on only after the unit of work commits (never for a rolled-back change)."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)
_KEY = "after_commit_jobs"


def run_after_commit(session: Session, job: Callable[[], None]) -> None:
    session.info.setdefault(_KEY, []).append(job)


def has_jobs(session: Session) -> bool:
    """Whether the unit of work has jobs waiting for its commit."""
    return bool(session.info.get(_KEY))


@event.listens_for(Session, "after_commit")
def _run_jobs(session: Session) -> None:
    jobs: list[Callable[[], None]] = session.info.pop(_KEY, [])
    for job in jobs:
        try:
            job()
        except Exception:
            # The lease brings the step back even if the hand-off fails.
            log.exception("after_commit_job_failed")


@event.listens_for(Session, "after_rollback")
def _drop_jobs(session: Session) -> None:
    session.info.pop(_KEY, None)
