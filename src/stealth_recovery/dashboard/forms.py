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
from stealth_recovery.retry import policy as policy_service
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
    """The policy's values, and a message per field that breaks a rule of `policy.validate`
    or of the API's `PolicyCreate` (so the form accepts exactly what the API accepts)."""
    values, errors = _numbers(form)
    if errors:
        return values, errors
    try:
        channels = policy_service.validate(**values)
    except InvalidInput as exc:
        return values, {exc.field: exc.rule}
    errors = schema_errors(PolicyCreate, values)
    if not errors:
        values["enabled_channels"] = channels
    return values, errors


def schedule_of_values(values: dict[str, Any]) -> Schedule:
    return Schedule(
        max_retries=values["max_retries"],
        initial_delay_minutes=values["initial_delay_minutes"],
        backoff_multiplier=values["backoff_multiplier"],
        max_delay_minutes=values["max_delay_minutes"],
    )


def schedule_rows(schedule: Schedule) -> list[dict[str, Any]]:
    """Each reminder: how long it waits after the previous step, and after the failure."""
    start = utc_now()
    rows = []
    previous = start
    for n, at in enumerate(backoff.preview(schedule, start), start=1):
        rows.append({"number": n, "wait": at - previous, "after_open": at - start})
        previous = at
    return rows


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
