"""Running agent-written code: isolated processes, their limits, and the red team."""
