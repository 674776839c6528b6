"""Fakes for tests and demos: a local Anthropic Messages API."""
