"""The one exception type that the command line turns into a single clear line and exit code 2."""


class UserError(Exception):
    """Bad configuration or data: the message names the file, record and field, and says what is wrong."""


class SetupWarning(UserWarning):
    """Something in the user's setup worth fixing that does not stop the command; the command line prints it as one line."""
