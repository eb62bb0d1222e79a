"""Errors a user can cause: one clear line and exit code 2, no traceback."""


class UserError(Exception):
    """A problem with something the user gave (model, images, target, config, address)."""

    exit_code = 2
