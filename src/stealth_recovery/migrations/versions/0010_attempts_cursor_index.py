"""The attempts listing's cursor index ends with the id tie-breaker

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The new index first: the listing always has one to use.
    op.create_index(
        "ix_recovery_attempts_org_created_id",
        "recovery_attempts",
        ["organization_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index("ix_recovery_attempts_org_created", table_name="recovery_attempts")


def downgrade() -> None:
    op.create_index(
        "ix_recovery_attempts_org_created",
        "recovery_attempts",
        ["organization_id", "created_at"],
        unique=False,
    )
    op.drop_index("ix_recovery_attempts_org_created_id", table_name="recovery_attempts")
