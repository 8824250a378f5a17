"""hand-over states of a message and the owner of a step's lease

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 02:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = "status IN ('pending', 'sent', 'delivered', 'failed', 'bounced')"
_NEW_STATUSES = (
    "status IN ('pending', 'handing_over', 'sent', 'delivered', 'failed', 'bounced',"
    " 'unconfirmed', 'cancelled')"
)
_UNSETTLED = "status IN ('pending', 'handing_over')"


def upgrade() -> None:
    with op.batch_alter_table("recovery_attempts") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
    with op.batch_alter_table("notification_logs") as batch:
        batch.drop_constraint(op.f("ck_notification_logs_status"), type_="check")
        batch.create_check_constraint("status", _NEW_STATUSES)
    op.create_index(
        "ix_notification_logs_unsettled",
        "notification_logs",
        ["attempt_id"],
        unique=False,
        postgresql_where=sa.text(_UNSETTLED),
        sqlite_where=sa.text(_UNSETTLED),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_notification_logs_unsettled",
        table_name="notification_logs",
        postgresql_where=sa.text(_UNSETTLED),
        sqlite_where=sa.text(_UNSETTLED),
    )
    # Rows in the new states have no older equivalent: unknown outcomes count as failed.
    op.execute(
        "UPDATE notification_logs SET status = 'failed' "
        "WHERE status IN ('handing_over', 'unconfirmed', 'cancelled')"
    )
    with op.batch_alter_table("notification_logs") as batch:
        batch.drop_constraint(op.f("ck_notification_logs_status"), type_="check")
        batch.create_check_constraint("status", _OLD_STATUSES)
    with op.batch_alter_table("recovery_attempts") as batch:
        batch.drop_column("lease_owner")
