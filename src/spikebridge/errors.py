"""The one exception type users see: its message is a complete one-line explanation."""


class SpikebridgeError(Exception):
    """Bad input or missing resource; the CLI prints the message and exits with status 2."""
