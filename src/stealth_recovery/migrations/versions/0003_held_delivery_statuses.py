"""held delivery statuses: callbacks that arrive before the send is recorded

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "held_delivery_statuses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_message_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('delivered', 'failed', 'bounced')",
            name=op.f("ck_held_delivery_statuses_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_held_delivery_statuses")),
    )
    with op.batch_alter_table("held_delivery_statuses", schema=None) as batch_op:
        batch_op.create_index(
            "ix_held_delivery_statuses_message", ["provider", "provider_message_id"], unique=False
        )
        batch_op.create_index(
            "ix_held_delivery_statuses_received_at", ["received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("held_delivery_statuses", schema=None) as batch_op:
        batch_op.drop_index("ix_held_delivery_statuses_received_at")
        batch_op.drop_index("ix_held_delivery_statuses_message")
    op.drop_table("held_delivery_statuses")
