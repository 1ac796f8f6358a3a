"""The one error type the command line turns into a single readable line (exit code 2)."""


class UserError(Exception):
    """Bad input or a missing prerequisite the user can fix.

    The message must say what is wrong (naming the file, line or field) and what to do.
    The command line prints it as one line and exits with code 2, without a traceback.
    """
