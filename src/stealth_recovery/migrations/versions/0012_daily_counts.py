"""Per-organization, per-day counters of attempts and messages, kept by triggers; backfilled
from a recount of the rows

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stealth_recovery.counters.definitions import drop_trigger_ddl, recount_sql, trigger_ddl

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daily_counts",
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("organization_id", "day", "metric", "shard"),
    )
    dialect = op.get_bind().dialect.name
    for statement in trigger_ddl(dialect):
        op.execute(statement)
    op.execute(recount_sql(dialect, one_organization=False))


def downgrade() -> None:
    for statement in drop_trigger_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("daily_counts")
