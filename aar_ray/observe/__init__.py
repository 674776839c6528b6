"""Observability: Ray metrics for the dashboard and W&B tracking of trials."""
