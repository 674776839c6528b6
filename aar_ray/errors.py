"""The one exception every rule the lab enforces raises: a *refusal*.

A refusal means the input or the request broke a rule (an unknown method, a parameter out of
range, a trial that is not the caller's, a spent budget); its message is safe to show to an
agent and says what to change. The tool boundary (`aar_ray.lab.tools.LabToolbox.call`) shows it
as it is. Every other exception that reaches the boundary is a bug, or an outage of Ray itself,
and is never dressed up as a refusal: a plain `ValueError` or `KeyError` from numpy, SQLite or
our own code is an *internal* error (docs/testing.md, "Error taxonomy").

`Refusal` subclasses `ValueError` so that code written against the older, broader convention
keeps working; new rule checks raise `Refusal` (or one of its subclasses), never a bare
`ValueError`.
"""
from __future__ import annotations


class Refusal(ValueError):
    """A request the lab refuses; the message says what is allowed instead."""


class ConfigError(Refusal):
    """A config value is missing, of the wrong type, out of range or unknown; names the field.
    Defined here, below `config` and `registry`, so that both raise it without importing each
    other; `aar_ray.config` re-exports it."""
