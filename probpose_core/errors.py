"""The one error type for bad user input (files, JSON, arrays).

The CLI turns it into a single line on stderr and exit code 2; library callers can catch it.
"""


class InputError(ValueError):
    """Malformed or inconsistent input, with a message that names the problem."""
