"""Password rules: long enough, and not guessable by a well-kept strength estimator (zxcvbn)."""

from __future__ import annotations

from collections.abc import Iterable

from zxcvbn import zxcvbn

from stealth_recovery.core.errors import InvalidInput

MIN_LENGTH = 10
MAX_LENGTH = 256
# zxcvbn's scale: 3 is "safely unguessable: moderate protection from offline slow-hash scenario"
# (10^8 guesses and more), its authors' threshold for a password worth accepting.
MIN_SCORE = 3
# zxcvbn refuses longer input (its matching is quadratic in the length); the rest of a longer
# password only adds strength.
_ESTIMATED_PREFIX = 72


def password_problem(password: str, *, user_inputs: Iterable[str | None] = ()) -> str | None:
    """Why `password` is refused, or None. `user_inputs` (e-mail, names) count as guessable."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    inputs = [value for value in user_inputs if value]
    inputs += [part for value in inputs for part in value.replace("@", " ").split()]
    result = zxcvbn(password[:_ESTIMATED_PREFIX], user_inputs=inputs)
    if result["score"] >= MIN_SCORE:
        return None
    feedback = result["feedback"]
    hint = feedback.get("warning") or "it is a common pattern"
    suggestions = " ".join(feedback.get("suggestions") or [])
    return f"is too easy to guess ({hint.rstrip('.')}). {suggestions}".strip()


def check_password(
    password: str, *, user_inputs: Iterable[str | None] = (), field: str = "password"
) -> None:
    """Raise InvalidInput (422 naming `field`) when `password_problem` finds one."""
    problem = password_problem(password, user_inputs=user_inputs)
    if problem is not None:
        raise InvalidInput(field, problem)
