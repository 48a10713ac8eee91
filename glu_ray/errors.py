"""The one exception type users see: a clear, one-line message about their input."""


class GluRayError(ValueError):
    """Bad input or an unusable model, detected before expensive work starts.

    The CLI and sweep scripts print ``str(err)`` on one line and exit non-zero; library callers
    can catch it like any ValueError.
    """


def first_line(err: BaseException, default: str | None = None) -> str:
    """An exception's first non-blank line (at most 300 characters), for one-line messages; its
    type name (or ``default``) when it has no text."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if lines:
        return lines[0][:300]
    return type(err).__name__ if default is None else default
