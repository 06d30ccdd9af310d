"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class SSPSError(Exception):
    """A problem with the user's input (file, key, value) that the message names."""


class PeerLostError(SSPSError):
    """Another rank died or hung. The process group's threads cannot be joined: exit without unwinding."""


class ConfigError(SSPSError, ValueError):
    """A config file or override that does not fit the schema."""
