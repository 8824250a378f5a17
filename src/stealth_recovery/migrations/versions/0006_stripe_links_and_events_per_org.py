"""Stripe: invoice and subscription links on transactions; webhook events unique per organization

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 02:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("psp_invoice_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("psp_subscription_id", sa.String(length=255), nullable=True))
        batch.create_index("ix_transactions_psp_invoice_id", ["psp_invoice_id"], unique=False)
        batch.create_index(
            "ix_transactions_org_psp_customer",
            ["organization_id", "psp_customer_id"],
            unique=False,
        )
        batch.create_index(
            "ix_transactions_org_psp_subscription",
            ["organization_id", "psp_subscription_id"],
            unique=False,
        )
    # Transactions Stripe events opened before: their reference is the invoice id.
    op.execute(
        "UPDATE transactions SET psp_invoice_id = external_ref "
        "WHERE psp_invoice_id IS NULL AND external_ref LIKE 'in!_%' ESCAPE '!' "
        "AND id IN (SELECT transaction_id FROM failure_events WHERE gateway = 'stripe')"
    )
    with op.batch_alter_table("psp_events") as batch:
        batch.drop_constraint("uq_psp_events_provider_event_id", type_="unique")
        batch.create_unique_constraint(
            "uq_psp_events_organization_id_provider_event_id",
            ["organization_id", "provider", "event_id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("psp_events") as batch:
        batch.drop_constraint("uq_psp_events_organization_id_provider_event_id", type_="unique")
        batch.create_unique_constraint("uq_psp_events_provider_event_id", ["provider", "event_id"])
    with op.batch_alter_table("transactions") as batch:
        batch.drop_index("ix_transactions_org_psp_subscription")
        batch.drop_index("ix_transactions_org_psp_customer")
        batch.drop_index("ix_transactions_psp_invoice_id")
        batch.drop_column("psp_subscription_id")
        batch.drop_column("psp_invoice_id")
