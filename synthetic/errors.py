"""Typed exceptions for bad configuration of domains, experts and baselines.

Each one subclasses an exception of :mod:`theory.errors` (hence ``ValueError``), and
every message names the offending option, domain or size on one line.
"""

from theory.errors import InputError, InvalidOptionError


class EnumerationTooLargeError(InputError):
    """The outcome space ``V^T`` is too large to enumerate exactly."""


class UnknownDomainError(InvalidOptionError):
    """A domain name that no registry knows."""


class EmptySplitError(InputError):
    """A train/validation/test split of a text domain holds no data."""
