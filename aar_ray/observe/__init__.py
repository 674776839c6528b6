"""Observability: Ray metrics for the dashboard, W&B tracking of trials, the operations log."""
