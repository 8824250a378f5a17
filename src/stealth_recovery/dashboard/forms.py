"""Reading the dashboard's forms: text in, typed values or a message per field out.

Each form is checked by the same schema as its API twin (`PolicyCreate`, `UserCreate`,
`ApiKeyCreate`), so a form can never store what the API would refuse.
"""

from __future__ import annotations

import math
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ValidationError

from stealth_recovery.auth.models import Role
from stealth_recovery.auth.passwords import password_problem
from stealth_recovery.auth.schemas import ApiKeyCreate
from stealth_recovery.core.api import invisible_character
from stealth_recovery.core.errors import InvalidInput
from stealth_recovery.core.time import utc_now
from stealth_recovery.notifications.models import Channel
from stealth_recovery.recovery import schedule as backoff
from stealth_recovery.recovery.schedule import Schedule
from stealth_recovery.recovery.windows import (
    DAY_NAMES,
    UTC_PLACE,
    Place,
    check_zone,
    day_names,
    format_clock,
    zone_info,
)
from stealth_recovery.retry import policy as policy_service
from stealth_recovery.retry.models import RetryPolicy
from stealth_recovery.retry.schemas import PolicyCreate


def default_policy_form() -> dict[str, Any]:
    """The new-policy form, filled with the default schedule."""
    d = policy_service.DEFAULT_SCHEDULE
    return {
        "name": "",
        "max_retries": str(d.max_retries),
        "initial_delay_minutes": str(d.initial_delay_minutes),
        "backoff_multiplier": f"{d.backoff_multiplier:g}",
        "max_delay_minutes": str(d.max_delay_minutes),
        "enabled_channels": [Channel.email.value],
        "window_start": "",
        "window_end": "",
        "window_days": list(DAY_NAMES[:5]),
        "window_skip_holidays": False,
        "preview_timezone": "UTC",
        "preview_country": "",
    }


def policy_form_of(policy: RetryPolicy) -> dict[str, Any]:
    """The form filled with a stored policy, to edit it."""
    window = policy.send_window
    return {
        "name": policy.name,
        "max_retries": str(policy.max_retries),
        "initial_delay_minutes": str(policy.initial_delay_minutes),
        "backoff_multiplier": f"{policy.backoff_multiplier:g}",
        "max_delay_minutes": str(policy.max_delay_minutes),
        "enabled_channels": list(policy.enabled_channels),
        "window_start": format_clock(window.start_minute) if window else "",
        "window_end": format_clock(window.end_minute) if window else "",
        "window_days": day_names(window.days) if window else list(DAY_NAMES[:5]),
        "window_skip_holidays": window.skip_holidays if window else False,
        "preview_timezone": "UTC",
        "preview_country": "",
    }


def _numbers(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {"name": form["name"], "enabled_channels": form["enabled_channels"]}
    errors: dict[str, str] = {}
    for field in ("max_retries", "initial_delay_minutes", "max_delay_minutes"):
        try:
            values[field] = int(str(form[field]).strip())
        except ValueError:
            errors[field] = "must be a whole number"
    try:
        multiplier = float(str(form["backoff_multiplier"]).strip())
        if not math.isfinite(multiplier):
            raise ValueError
        values["backoff_multiplier"] = multiplier
    except ValueError:
        errors["backoff_multiplier"] = "must be a number, such as 2 or 1.5"
    return values, errors


def schema_errors(schema: type[BaseModel], values: dict[str, Any]) -> dict[str, str]:
    """A message per field for each rule of the API's `schema` that `values` break."""
    try:
        schema.model_validate(values)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "form"
            errors.setdefault(field, str(error["msg"]).removeprefix("Value error, "))
        return errors
    return {}


def validate_policy_form(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The policy's values (the service's arguments, `window` included), and a message per
    field that breaks a rule of `policy.validate`, `policy.validate_window` or of the API's
    `PolicyCreate` (so the form accepts exactly what the API accepts).

    No window start and end: no window (the day boxes and the holiday box are then ignored,
    as the form always sends days).
    """
    values, errors = _numbers(form)
    if errors:
        return values, errors
    try:
        channels = policy_service.validate(**values)
    except InvalidInput as exc:
        return values, {exc.field: exc.rule}
    errors = schema_errors(PolicyCreate, values)
    if errors:
        return values, errors
    values["enabled_channels"] = channels
    start = str(form.get("window_start") or "").strip() or None
    end = str(form.get("window_end") or "").strip() or None
    windowed = start is not None or end is not None
    try:
        values["window"] = policy_service.validate_window(
            window_start=start,
            window_end=end,
            window_days=list(form.get("window_days") or []) if windowed else None,
            window_skip_holidays=bool(form.get("window_skip_holidays")) and windowed,
        )
    except InvalidInput as exc:
        return values, {exc.field: exc.rule}
    return values, {}


def preview_place(form: dict[str, Any]) -> tuple[Place, dict[str, str]]:
    """Where the preview's customer is (zone, country), or a message per field."""
    try:
        zone = check_zone(str(form.get("preview_timezone") or "UTC"))
    except ValueError as exc:
        return UTC_PLACE, {"preview_timezone": str(exc)}
    country = str(form.get("preview_country") or "").strip().upper() or None
    if country is not None and not (len(country) == 2 and country.isascii() and country.isalpha()):
        return UTC_PLACE, {"preview_country": "must be a two-letter country code such as DE"}
    return Place(zone, country), {}


def schedule_of_values(values: dict[str, Any]) -> Schedule:
    return Schedule(
        max_retries=values["max_retries"],
        initial_delay_minutes=values["initial_delay_minutes"],
        backoff_multiplier=values["backoff_multiplier"],
        max_delay_minutes=values["max_delay_minutes"],
        window=values.get("window"),
    )


def schedule_rows(schedule: Schedule, place: Place = UTC_PLACE) -> list[dict[str, Any]]:
    """Each reminder of a payment failing now: how long it waits after the previous step and
    after the failure, when it goes in the customer's time (`place`), and whether the send
    window moved it."""
    start = utc_now()
    zone = zone_info(place.zone)
    rows = []
    previous = start
    for n, (due, at) in enumerate(backoff.preview_steps(schedule, start, place), start=1):
        rows.append(
            {
                "number": n,
                "wait": at - previous,
                "after_open": at - start,
                "local": at.astimezone(zone).strftime("%a %d %b %H:%M"),
                "moved": at != due,
            }
        )
        previous = at
    return rows


def window_text(policy: RetryPolicy) -> str:
    """A policy's send window in words: "09:00–20:00 mon–fri, not on holidays", or ""."""
    window = policy.send_window
    if window is None:
        return ""
    names = day_names(window.days)
    days = "every day" if len(names) == 7 else ", ".join(names)
    if names == list(DAY_NAMES[:5]):
        days = "mon–fri"
    holidays = ", not on holidays" if window.skip_holidays else ""
    return f"{format_clock(window.start_minute)}–{format_clock(window.end_minute)} {days}{holidays}"


def email_address(value: str) -> str | None:
    """The normalised address, or None when `value` is not one."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def check_new_user(
    *, email: str, role: str, password: str, full_name: str = ""
) -> tuple[str | None, str | None]:
    """The normalised address, or the message to show next to the add-user form."""
    address = email_address(email)
    if address is None:
        return None, "Enter a valid email address."
    if role not in {r.value for r in Role}:
        return None, "Choose a role."
    if (found := invisible_character(full_name)) is not None:
        return None, f"The name must not contain invisible or bidirectional characters ({found})."
    if len(full_name) > 200:
        return None, "The name must be at most 200 characters."
    problem = password_problem(password, user_inputs=[address, full_name])
    if problem is not None:
        return None, f"The password {problem}"
    return address, None


def check_api_key_name(name: str) -> str | None:
    """The message to show next to the new-key form, or None when the API would take it."""
    errors = schema_errors(ApiKeyCreate, {"name": name.strip()})
    return "Name the key (1 to 128 characters)." if errors else None
