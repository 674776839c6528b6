"""The lab: actors that own state and schedule work (scorer, forum, trial queue, researchers)
and the campaign that wires them together. Actors do no science themselves."""

from aar_ray import train

NAMESPACE = "aar"
# Every lab process (scorer, trial workers, the driver) fine-tunes through Ray Train; installing
# imports neither Ray nor torch, so agent processes stay light.
train.install()
