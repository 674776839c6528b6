"""The lab: the actors that own a campaign's state (scorer, forum, trial queue, researchers),
their tools and rules, and the campaign that wires them. They call the science (w2s), never
reimplement it. Importing it does nothing: each process that may fine-tune (the driver in
`campaign.start_lab`, the scorer, trial workers) installs the Ray Train launcher itself."""

NAMESPACE = "aar"
# Every long-lived lab actor: no CPU reserved (they mostly wait), restarted on failure and its
# in-flight calls retried; their state is in SQLite, so a restart loses nothing.
ACTOR_OPTIONS = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
