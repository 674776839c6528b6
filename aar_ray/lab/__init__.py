"""The lab: actors that own state and schedule work (scorer, forum, trial queue, researchers)
and the campaign that wires them together. Actors do no science themselves."""

NAMESPACE = "aar"
