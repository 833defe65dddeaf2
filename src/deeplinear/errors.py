"""The one exception users see: bad input, reported as a single line with the fix."""


class UsageError(ValueError):
    """Bad input. ``str(error)`` is one line naming the field and what is expected.

    The CLI prints it and exits with status 2; the Python API raises it.
    """
