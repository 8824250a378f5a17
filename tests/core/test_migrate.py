"""The schema comes from Alembic alone, and it matches the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from stealth_recovery.all_models import Base


class TestMigrationsMatchModels:
    def test_autogenerate_finds_no_difference(self, engine: Engine) -> None:
        # Given a database built by the migrations alone
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"compare_type": True, "target_metadata": Base.metadata},
            )
            # When Alembic compares it with the models
            diff = compare_metadata(context, Base.metadata)
        # Then there is nothing to generate
        assert diff == []

    def test_every_table_of_the_domain_exists(self, engine: Engine) -> None:
        tables = set(inspect(engine).get_table_names())
        assert {
            "organizations",
            "users",
            "api_keys",
            "transactions",
            "failure_events",
            "recovery_attempts",
            "retry_policies",
            "notification_logs",
            "psp_events",
            "stripe_connections",
        } <= tables

    def test_notification_key_and_due_index_exist(self, engine: Engine) -> None:
        inspector = inspect(engine)
        uniques = inspector.get_unique_constraints("notification_logs")
        assert any(u["column_names"] == ["attempt_id", "retry_number", "channel"] for u in uniques)
        indexes = {i["name"] for i in inspector.get_indexes("recovery_attempts")}
        assert "ix_recovery_attempts_due" in indexes
