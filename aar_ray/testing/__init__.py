"""Fakes for tests and demos: a local Messages API, scripted models to play it, a local cluster."""
