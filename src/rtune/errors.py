"""The one exception type the CLI shows as a plain message instead of a traceback."""


class RtuneError(Exception):
    """A problem the user can fix (bad file, unknown name, missing field): the message says what and where."""
