"""User-facing errors: one line that names the file, line or key and what to do."""


class UserError(Exception):
    """A mistake in the user's input (a file, a config key, a checkpoint).

    The command lines print ``error: <message>`` on one line and exit with
    status 2 instead of a traceback.
    """
