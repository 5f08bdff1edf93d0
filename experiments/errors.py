"""The one exception type the CLI turns into a one-line ``error: ...`` message."""


class UserError(Exception):
    """Bad input or options: the message says what is wrong and how to fix it.

    The CLI prints ``error: <message>`` on one line and exits with status 2; no traceback.
    """
