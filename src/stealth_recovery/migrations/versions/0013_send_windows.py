"""Retry policies may set a send window in the customer's time zone; attempts copy it

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WINDOW_CHECK_SQL = (
    "window_start_minute IS NULL AND window_end_minute IS NULL AND window_days IS NULL "
    "OR window_start_minute >= 0 AND window_start_minute < window_end_minute "
    "AND window_end_minute <= 1440 AND window_days BETWEEN 1 AND 127"
)


def _window_columns() -> list[sa.Column]:
    return [
        sa.Column("window_start_minute", sa.Integer()),
        sa.Column("window_end_minute", sa.Integer()),
        sa.Column("window_days", sa.Integer()),
        sa.Column("window_skip_holidays", sa.Boolean(), server_default=sa.false(), nullable=False),
    ]


def upgrade() -> None:
    # Plain ADD COLUMNs, on SQLite too: no table is rebuilt, so the counting triggers on
    # recovery_attempts (0012) stay.
    for table in ("retry_policies", "recovery_attempts"):
        for column in _window_columns():
            op.add_column(table, column)
    if op.get_bind().dialect.name == "postgresql":
        # SQLite cannot add a check to a table without rebuilding it; the policy's validation
        # holds the same rule there.
        op.create_check_constraint(
            op.f("ck_retry_policies_send_window"), "retry_policies", WINDOW_CHECK_SQL
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_retry_policies_send_window", "retry_policies", type_="check")
    for table in ("recovery_attempts", "retry_policies"):
        with op.batch_alter_table(table) as batch:
            for column in reversed(_window_columns()):
                batch.drop_column(column.name)
