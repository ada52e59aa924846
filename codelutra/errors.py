"""The one exception type that the command line turns into a single clear line and exit code 2."""


class UserError(Exception):
    """Bad configuration or data: the message names the file, record and field, and says what is wrong."""
