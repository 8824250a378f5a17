"""Attempts: Checkout closed at Stripe, payments after the end, second payments

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECKOUT_TO_CLOSE = (
    "checkout_session_id IS NOT NULL AND checkout_closed_at IS NULL "
    "AND status IN ('completed', 'expired', 'cancelled')"
)


def upgrade() -> None:
    with op.batch_alter_table("recovery_attempts") as batch:
        batch.add_column(sa.Column("checkout_closed_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("paid_via", sa.String(length=255)))
        batch.add_column(
            sa.Column("paid_after_end", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("second_payment_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("second_payment_ref", sa.String(length=255)))
    # Sessions of attempts that ended before this revision are left alone (Stripe expires them
    # after 24 h anyway); only attempts ending from now on are swept.
    op.execute(
        "UPDATE recovery_attempts SET checkout_closed_at = updated_at "
        "WHERE checkout_session_id IS NOT NULL "
        "AND status IN ('completed', 'expired', 'cancelled')"
    )
    op.create_index(
        "ix_recovery_attempts_checkout_to_close",
        "recovery_attempts",
        ["id"],
        unique=False,
        postgresql_where=sa.text(_CHECKOUT_TO_CLOSE),
        sqlite_where=sa.text(_CHECKOUT_TO_CLOSE),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_recovery_attempts_checkout_to_close",
        table_name="recovery_attempts",
        postgresql_where=sa.text(_CHECKOUT_TO_CLOSE),
        sqlite_where=sa.text(_CHECKOUT_TO_CLOSE),
    )
    with op.batch_alter_table("recovery_attempts") as batch:
        batch.drop_column("second_payment_ref")
        batch.drop_column("second_payment_at")
        batch.drop_column("paid_after_end")
        batch.drop_column("paid_via")
        batch.drop_column("checkout_closed_at")
