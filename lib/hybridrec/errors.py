"""Errors a user can fix (bad config, missing path): printed as one line, no stack trace."""


class UserError(Exception):
    """A problem with the user's input or configuration; the message names the culprit."""
