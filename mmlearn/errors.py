"""Errors that reach the user as one line: what is wrong, where, and what to do."""


class MmlearnError(Exception):
    """A problem with the user's input or files; the CLI prints it as one line and exits 2."""


class DataError(MmlearnError):
    """A data file is missing, malformed or inconsistent."""


class ConfigError(MmlearnError):
    """An option or configuration value breaks a rule."""
