"""The one exception type the CLIs turn into a one-line message and an exit code."""


class ToolError(Exception):
    """A failure the user can act on: the message says what is wrong and how to fix it."""

    def __init__(self, message: str, exit_code: int = 1, code: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code  # the service's error code, when a cloud API refused (e.g. RepositoryNotFoundException)


class UsageError(ToolError):
    """Bad command-line or configuration input (exit 2, like argparse)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)
