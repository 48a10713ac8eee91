"""The one exception type users see: a clear, one-line message about their input."""


class GluRayError(ValueError):
    """Bad input or an unusable model, detected before expensive work starts.

    The CLI and sweep scripts print ``str(err)`` on one line and exit non-zero; library callers
    can catch it like any ValueError.
    """
