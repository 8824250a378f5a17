"""Errors about accounts, logins and API keys; `type` is the error body's stable name."""

from __future__ import annotations

from stealth_recovery.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized


class EmailTaken(Conflict):
    type = "email_taken"


class OrganizationSlugTaken(Conflict):
    type = "organization_slug_taken"


class RegistrationClosed(Forbidden):
    type = "registration_closed"


class InvalidCredentials(Unauthorized):
    type = "invalid_credentials"


class UserDeactivated(Unauthorized):
    type = "user_deactivated"


class SessionEnded(Unauthorized):
    type = "session_ended"


class NotAuthenticated(Unauthorized):
    type = "not_authenticated"


class InvalidApiKey(Unauthorized):
    type = "invalid_api_key"


class RoleRequired(Forbidden):
    type = "role_required"


class UserLoginRequired(Forbidden):
    type = "user_login_required"


class UserNotFound(NotFound):
    type = "user_not_found"


class ApiKeyNotFound(NotFound):
    type = "api_key_not_found"


class CannotDeactivateSelf(Conflict):
    type = "cannot_deactivate_self"


class WrongCurrentPassword(InvalidInput):
    type = "wrong_current_password"

    def __init__(self) -> None:
        super().__init__("current_password", "is not the current password")


class ResetLinkInvalid(InvalidInput):
    type = "reset_link_invalid"

    def __init__(self) -> None:
        super().__init__("token", "is unknown, expired or already used")


class InviteInvalid(InvalidInput):
    type = "invite_invalid"
