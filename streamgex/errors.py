"""The one exception type for mistakes a user can cause."""


class StreamgexError(Exception):
    """A user-facing error: bad input file, wrong option, missing or incomplete stage.

    The message is one line that names the file, the position and the fix; the
    CLI prints it without a traceback and exits non-zero.
    """
