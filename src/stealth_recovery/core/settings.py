"""Every setting of the service, read from the environment (and an optional `.env`)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
from functools import cached_property, lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MIN_SECRET_KEY_BYTES = 32
# Values published in this project's files at one time or another: never a real secret.
KNOWN_SECRET_KEYS = frozenset(
    {
        "change-me-local-only",
        "test-secret-key-not-for-production",
        "change-me",
        "changeme",
        "secret",
    }
)
SECRET_KEY_FILE_SUFFIX = ".secret-key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Literal["local", "test", "production"] = "local"
    database_url: str = (
        "sqlite:///./stealth_recovery.db"  # SQLAlchemy URL; SQLite is the embedded default
    )
    # Database connections per process (PostgreSQL): up to 10 stay open, the rest open on demand.
    # 0: `serve` derives it from the server's max_connections (core.database.pool_size_for), other
    # processes take 30.
    database_pool_size: int = Field(default=0, ge=0)
    # A request waiting longer than this for one of the pool's slots is refused: 503, Retry-After.
    shed_after_seconds: float = Field(default=1.0, gt=0)
    redis_url: str | None = (
        None  # set it to run on Celery + Redis; unset runs the in-process scheduler
    )
    celery_broker_url: str | None = None  # overrides REDIS_URL as the Celery broker
    celery_result_backend: str | None = None  # overrides REDIS_URL as the Celery result backend
    base_url: str = (
        "http://localhost:8000"  # public address of this service, used in pay links and callbacks
    )

    # Signs tokens and cookies, derives the encryption key of stored secrets; at least 32 bytes.
    # Unset, only the embedded default (SQLite file, not production) runs: it generates one.
    secret_key: SecretStr | None = None
    # The key before a rotation: still decrypts stored secrets until `rotate-secrets` has run.
    secret_key_previous: SecretStr | None = None
    # Who may create an organization through POST /v1/auth/register: anyone (`open`), holders
    # of an invite from `stealth-recovery invite` (`invite`), nobody (`closed`: only the
    # `create-admin` command). Unset: `closed` when ENVIRONMENT=production, `open` otherwise.
    registration: Literal["open", "invite", "closed"] | None = None
    jwt_ttl_minutes: int = Field(default=60, ge=1)  # lifetime of an access token
    password_reset_ttl_minutes: int = Field(default=60, ge=5, le=1440)  # a reset link's life

    # auto: on the embedded local set-up, channels without a provider go to the local outbox
    # (kept and shown on the dashboard, never sent); outbox: every channel; providers: never
    delivery_mode: Literal["auto", "providers", "outbox"] = "auto"
    smtp_host: str = "localhost"  # SMTP server for email reminders
    smtp_port: int = Field(
        default=1025, ge=1, le=65535
    )  # 1025 for a local mail catcher, 587 for STARTTLS
    smtp_user: str | None = None  # SMTP login, when the server needs one
    smtp_password: SecretStr | None = None  # SMTP password
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
    twilio_auth_token: SecretStr | None = None  # Twilio auth token; also verifies status callbacks
    twilio_from_number: str | None = None  # E.164 sender number
    twilio_api_base: str = (
        "https://api.twilio.com"  # Twilio REST base URL (tests point it at loopback)
    )

    whatsapp_api_key: SecretStr | None = (
        None  # WhatsApp Cloud API access token; WhatsApp is off without it
    )
    whatsapp_business_number: str | None = None  # the WhatsApp phone number id that sends
    whatsapp_api_base: str = "https://graph.facebook.com/v21.0"  # Graph API base URL
    whatsapp_app_secret: SecretStr | None = None  # verifies X-Hub-Signature-256 on webhooks
    whatsapp_verify_token: SecretStr | None = None  # answers the webhook verification challenge
    whatsapp_template_name: str = "payment_recovery"  # approved template used for reminders
    # Our language → the code the template was approved under, e.g. {"en": "en_US"} (JSON)
    whatsapp_template_languages: dict[str, str] = Field(default_factory=dict)

    stripe_api_base: str = (
        "https://api.stripe.com"  # Stripe API base URL (tests point it at loopback)
    )

    # The pay page's button marks the attempt paid without any payment provider: a test
    # payment, labelled as such and never counted as recovered. Refused in production.
    test_payments: bool = False
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
    login_attempts_per_minute: int = Field(
        default=20, ge=1
    )  # logins (API and dashboard) per client address per minute
    login_failures_per_account: int = Field(
        default=10, ge=1
    )  # failed logins per account within LOGIN_FAILURE_WINDOW_MINUTES, then 429
    login_failure_window_minutes: int = Field(default=15, ge=1)  # the per-account window
    # Comma-separated addresses or networks of the reverse proxies whose X-Forwarded-For is
    # believed, e.g. "127.0.0.1,10.0.0.0/8"; unset: the peer address is the client.
    trusted_proxies: str | None = None
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024
    )  # larger request bodies (JSON, forms, webhooks) are refused with 413
    metrics_token: SecretStr | None = None  # when set, /metrics needs "Authorization: Bearer …"
    # Merchant webhooks (docs/webhooks.md).
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=30)  # per delivery, in total
    webhook_max_response_bytes: int = Field(
        default=65_536, ge=1024
    )  # bytes of an endpoint's answer read; the rest is dropped
    webhook_lease_seconds: int = Field(default=60, ge=10)  # a claimed delivery is re-offered after
    webhook_sweep_seconds: float = Field(
        default=5.0, gt=0
    )  # due deliveries: Beat / embedded period
    webhook_disable_after_hours: float = Field(
        default=72.0, gt=0
    )  # an endpoint failing for this long is disabled
    # Lets endpoints point at loopback and private addresses (local receivers, tests); refused
    # in production.
    webhook_allow_private_targets: bool = False

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

    @field_validator("secret_key", "secret_key_previous")
    @classmethod
    def _real_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        check_secret_key(value.get_secret_value())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _parsable_proxies(cls, value: str | None) -> str | None:
        if value is not None:
            _networks(value)
        return value

    @model_validator(mode="after")
    def _secret_key_required_outside_the_embedded_default(self) -> Settings:
        if self.secret_key is None and self.secret_key_file is None:
            raise ValueError(
                "SECRET_KEY is required (only the embedded default, a SQLite file outside "
                "ENVIRONMENT=production, generates its own); make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if self.test_payments and self.environment == "production":
            raise ValueError(
                "TEST_PAYMENTS must not be set when ENVIRONMENT=production: customers could "
                "mark their debts paid without paying"
            )
        if self.webhook_allow_private_targets and self.environment == "production":
            raise ValueError(
                "WEBHOOK_ALLOW_PRIVATE_TARGETS must not be set when ENVIRONMENT=production: "
                "webhooks could reach the service's own network"
            )
        if self.secret_key_previous is not None and (
            self.secret_key_previous.get_secret_value() == self.signing_secret_or_none()
        ):
            raise ValueError("SECRET_KEY_PREVIOUS must differ from SECRET_KEY")
        return self

    _generated_key: str | None = PrivateAttr(default=None)
    _generated_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def registration_mode(self) -> Literal["open", "invite", "closed"]:
        if self.registration is not None:
            return self.registration
        return "closed" if self.environment == "production" else "open"

    @property
    def secret_key_file(self) -> Path | None:
        """Where the embedded default keeps its generated key: beside the SQLite file.

        None when SECRET_KEY must be given instead (PostgreSQL, in-memory SQLite, production).
        """
        if self.environment == "production" or not self.is_sqlite:
            return None
        database = make_url(self.database_url).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database).with_name(Path(database).name + SECRET_KEY_FILE_SUFFIX)

    def signing_secret(self) -> str:
        """The secret key in force: SECRET_KEY, or the embedded default's generated key file.

        The file is made on first use (256 random bits, mode 0600) and read on every later
        start, so sessions and stored secrets survive restarts. Raises `SettingsError` when the
        file cannot be read or holds something that is not a valid key.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        with self._generated_lock:
            if self._generated_key is None:
                path = self.secret_key_file
                assert path is not None  # the model validator refused this case
                self._generated_key = _load_or_create_key_file(path)
            return self._generated_key

    def signing_secret_or_none(self) -> str | None:
        return self.secret_key.get_secret_value() if self.secret_key is not None else None

    def secret_values(self) -> list[str]:
        """The value of every secret setting that is set (what logs must never show)."""
        values = [
            value.get_secret_value()
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), SecretStr)
        ]
        if self._generated_key is not None:
            values.append(self._generated_key)
        password = make_url(self.database_url).password
        for url in (self.redis_url, self.celery_broker_url, self.celery_result_backend):
            if url and "@" in url:
                values.append(urlsplit(url).password or "")
        return [v for v in [*values, password or ""] if v]

    def previous_signing_secret(self) -> str | None:
        if self.secret_key_previous is None:
            return None
        return self.secret_key_previous.get_secret_value()

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the psycopg 3 driver made explicit for PostgreSQL."""
        url = make_url(self.database_url)
        if url.drivername in {"postgresql", "postgres"}:
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)

    def external_url(self, path: str) -> str:
        """The address from outside of one of this service's paths ("/pay/<token>",
        "/dashboard", a provider callback): BASE_URL without its trailing slash, then `path`."""
        return self.base_url.rstrip("/") + path

    @property
    def public_https(self) -> bool:
        """Whether BASE_URL is https: cookies go out Secure and HSTS is sent."""
        return urlsplit(self.base_url).scheme.lower() == "https"

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

    @cached_property
    def trusted_proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return _networks(self.trusted_proxies) if self.trusted_proxies else ()


def _networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    networks = []
    for item in value.split(","):
        if not item.strip():
            continue
        try:
            networks.append(ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item.strip()!r} is not an IP address or network") from None
    return tuple(networks)


def reveal(value: SecretStr | None) -> str | None:
    """The plain value of a secret setting, for the one call that needs it (None when unset)."""
    return value.get_secret_value() if value is not None else None


class SettingsError(RuntimeError):
    """A setting from the environment is invalid; the message names each variable."""


def check_secret_key(value: str) -> None:
    """Refuse a secret key anyone could know: a published value, or under 32 bytes (ValueError)."""
    if value.strip() in KNOWN_SECRET_KEYS:
        raise ValueError("is a value published in this project's files, not a secret")
    if len(value.encode()) < MIN_SECRET_KEY_BYTES:
        raise ValueError(
            f"must be at least {MIN_SECRET_KEY_BYTES} bytes; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )


def _load_or_create_key_file(path: Path) -> str:
    """Read the generated key, or create it; two processes starting at once agree on one."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(secrets.token_urlsafe(32) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                # link() fails if another process won the race: then its key is the key.
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, path)
            finally:
                temporary.unlink(missing_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        key = path.read_text().strip()
    except OSError as exc:
        raise SettingsError(f"SECRET_KEY: cannot read or create {path}: {exc.strerror}") from None
    try:
        check_secret_key(key)
    except ValueError as exc:
        raise SettingsError(f"SECRET_KEY: the key in {path} {exc}") from None
    return key


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
