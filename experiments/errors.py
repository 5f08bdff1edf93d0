"""The one exception type the CLI turns into a one-line ``error: ...`` message."""


class UserError(Exception):
    """Bad input or options: the message says what is wrong and how to fix it.

    The CLI prints ``error: <message>`` on one line and exits with status 2; no traceback.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message ("" without one)."""
    text = str(exc)
    return text.splitlines()[0] if text else ""


def one_line(exc: BaseException, *, empty: str = "") -> str:
    """``Type: first line of the message`` (``empty`` stands in for a missing message)."""
    return f"{type(exc).__name__}: {first_line(exc) or empty}".strip()
