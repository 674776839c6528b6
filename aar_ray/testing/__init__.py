"""Fakes for tests and demos: a local Anthropic Messages API, scripted models to play it, a
multi-node Ray cluster on one machine."""
