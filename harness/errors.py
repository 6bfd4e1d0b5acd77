"""The one exception type for mistakes a user can fix (bad config, missing file, wrong option).

The CLI prints its message as one line on stderr and exits with code 2; anything else is a bug
and keeps its traceback.
"""

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """A one-line, actionable message: name the field or file and say what to do."""

    def __init__(self, message: str) -> None:
        # Collapse to one line so callers cannot accidentally print a multi-line error.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)
