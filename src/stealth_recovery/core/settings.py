"""Every setting of the service, read from the environment (and an optional `.env`)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PLACEHOLDER_SECRET = "change-me-local-only"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Literal["local", "test", "production"] = (
        "local"  # production refuses placeholder secrets
    )
    database_url: str = (
        "sqlite:///./stealth_recovery.db"  # SQLAlchemy URL; SQLite is the embedded default
    )
    redis_url: str | None = (
        None  # set it to run on Celery + Redis; unset runs the in-process scheduler
    )
    celery_broker_url: str | None = None  # overrides REDIS_URL as the Celery broker
    celery_result_backend: str | None = None  # overrides REDIS_URL as the Celery result backend
    base_url: str = (
        "http://localhost:8000"  # public address of this service, used in pay links and callbacks
    )

    secret_key: str = (
        PLACEHOLDER_SECRET  # signs JWTs and session cookies; derives the encryption key
    )
    jwt_ttl_minutes: int = Field(default=60, ge=1)  # lifetime of an access token

    # auto: on the embedded local set-up, channels without a provider go to the local outbox
    # (kept and shown on the dashboard, never sent); outbox: every channel; providers: never
    delivery_mode: Literal["auto", "providers", "outbox"] = "auto"
    smtp_host: str = "localhost"  # SMTP server for email reminders
    smtp_port: int = Field(
        default=1025, ge=1, le=65535
    )  # 1025 for a local mail catcher, 587 for STARTTLS
    smtp_user: str | None = None  # SMTP login, when the server needs one
    smtp_password: str | None = None  # SMTP password
    smtp_from: str = "noreply@stealth-recovery.dev"  # envelope and header sender
    smtp_security: Literal["none", "starttls", "ssl"] = (
        "none"  # transport security towards the SMTP server
    )
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)  # per SMTP command
    smtp_pool_size: int = Field(default=200, ge=1)  # SMTP sessions per worker process
    provider_retry_attempts: int = Field(
        default=3, ge=1, le=10
    )  # calls per message on transient provider errors (429/5xx, timeouts, SMTP 4xx)
    provider_retry_backoff_seconds: float = Field(
        default=0.2, ge=0
    )  # wait before the 2nd call, doubled before each next one
    provider_retry_after_max_seconds: float = Field(
        default=5.0, ge=0
    )  # a longer Retry-After fails the message instead of holding the step
    provider_http_timeout_seconds: float = Field(default=10.0, gt=0)  # Twilio / Graph API calls
    step_retry_initial_seconds: float = Field(
        default=30.0, gt=0
    )  # a step whose provider failed transiently is due again after this, doubled each time
    step_retry_max_seconds: float = Field(default=1800.0, gt=0)  # longest wait between step tries
    step_retry_deadline_seconds: float = Field(
        default=21600.0, gt=0
    )  # after this long since a step's first try, a message still failing transiently fails
    provider_breaker_failures: int = Field(
        default=5, ge=1
    )  # consecutive transient failures that open a provider's circuit breaker
    provider_breaker_cooldown_seconds: float = Field(
        default=30.0, gt=0
    )  # an open breaker lets one probe through after this

    twilio_account_sid: str | None = None  # Twilio account (AC...); SMS is off without it
    twilio_auth_token: str | None = None  # Twilio auth token; also verifies status callbacks
    twilio_from_number: str | None = None  # E.164 sender number
    twilio_api_base: str = (
        "https://api.twilio.com"  # Twilio REST base URL (tests point it at loopback)
    )

    whatsapp_api_key: str | None = (
        None  # WhatsApp Cloud API access token; WhatsApp is off without it
    )
    whatsapp_business_number: str | None = None  # the WhatsApp phone number id that sends
    whatsapp_api_base: str = "https://graph.facebook.com/v21.0"  # Graph API base URL
    whatsapp_app_secret: str | None = None  # verifies X-Hub-Signature-256 on webhooks
    whatsapp_verify_token: str | None = None  # answers the webhook verification challenge
    whatsapp_template_name: str = "payment_recovery"  # approved template used for reminders
    # Our language → the code the template was approved under, e.g. {"en": "en_US"} (JSON)
    whatsapp_template_languages: dict[str, str] = Field(default_factory=dict)

    stripe_api_base: str = (
        "https://api.stripe.com"  # Stripe API base URL (tests point it at loopback)
    )

    attempt_ttl_days: int = Field(default=7, ge=1, le=90)  # how long a pay link stays valid
    queue_batch_size: int = Field(default=500, ge=1, le=10000)  # attempts claimed per queue pass
    queue_lease_seconds: int = Field(default=300, ge=10)  # a claimed step is re-offered after this
    send_concurrency: int = Field(default=200, ge=1)  # messages in flight per worker process
    dispatch_chunk_size: int = Field(default=250, ge=1)  # steps per Celery send task
    beat_queue_interval_seconds: float = Field(default=60.0, gt=0)  # Beat: retry queue period
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)  # worker /metrics port; 0: off
    scheduler_interval_seconds: float = Field(default=60.0, gt=0)  # embedded scheduler tick
    embedded_scheduler: bool = True  # run the queue in-process when there is no Redis
    token_rate_limit_per_minute: int = Field(
        default=30, ge=1
    )  # pay-link lookups per client address

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = (
        "INFO"  # log level (any case)
    )
    log_json: bool = False  # JSON log lines instead of the console renderer

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `REDIS_URL=` in a .env file means "not set", not "an empty URL".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _parsable_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL ({exc})") from exc
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError("only sqlite:// and postgresql:// URLs are supported")
        return value

    @model_validator(mode="after")
    def _no_placeholder_secret_in_production(self) -> Settings:
        if self.environment == "production" and self.secret_key == PLACEHOLDER_SECRET:
            raise ValueError("SECRET_KEY must be set to a real secret when ENVIRONMENT=production")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the psycopg 3 driver made explicit for PostgreSQL."""
        url = make_url(self.database_url)
        if url.drivername in {"postgresql", "postgres"}:
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)

    @property
    def broker_url(self) -> str | None:
        return self.celery_broker_url or self.redis_url

    @property
    def result_backend(self) -> str | None:
        return self.celery_result_backend or self.redis_url

    @property
    def uses_celery(self) -> bool:
        return self.broker_url is not None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class SettingsError(RuntimeError):
    """A setting from the environment is invalid; the message names each variable."""


def load_settings() -> Settings:
    """The settings from the environment and `.env`.

    Raises SettingsError with one line naming each bad variable and its problem.
    """
    try:
        return Settings()
    except SourceError as exc:
        # pydantic-settings parses JSON settings before validation and names only the field.
        match = re.search(r'field "(\w+)"', str(exc))
        name = match.group(1).upper() if match else "SETTINGS"
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise SettingsError(f"invalid configuration: {name}: not valid JSON{cause}") from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper() or "SETTINGS"
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
