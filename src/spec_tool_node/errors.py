"""The package's exceptions share one base, so a caller (and every CLI) can catch them all.

Specific errors derive from :class:`SpecToolNodeError` and, where a built-in type already says
what kind of failure it is, from that type too (a bad configuration is also a ``ValueError``), so
code written against the built-in types keeps working.
"""

from __future__ import annotations


class SpecToolNodeError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(SpecToolNodeError, ValueError):
    """A configuration that cannot run: an unknown mode, a missing model, a bad config file."""
