"""The weak-to-strong science: tasks, models, features, methods, training and one trial.

Nothing here imports Ray or the lab, so it is testable with plain pytest.
"""
