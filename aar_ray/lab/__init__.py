"""The lab: the actors that own a campaign's state (scorer, forum, trial queue, researchers),
their tools and rules, and the campaign that wires them. They call the science (w2s), never
reimplement it."""

from aar_ray import train

NAMESPACE = "aar"
# Every long-lived lab actor: no CPU reserved (they mostly wait), restarted on failure and its
# in-flight calls retried; their state is in SQLite, so a restart loses nothing.
ACTOR_OPTIONS = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
# Every lab process (scorer, trial workers, the driver) fine-tunes through Ray Train; installing
# imports neither Ray nor torch, so agent processes stay light.
train.install()
