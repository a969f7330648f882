"""The one error type for bad user input: config, corpus, paths."""


class InputError(ValueError):
    """Bad input, reported to the user as one line before any work starts.

    The message must name what is wrong (a config key, a file) and how; it is
    printed as it is, without a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # always one line
