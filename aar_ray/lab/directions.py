"""Nine deliberately vague starting directions, one per agent (the seed's lesson: different
starting points made the team; detailed instructions made results worse)."""

DIRECTIONS = [
    "Not every weak label deserves the same trust. Think about which examples to learn from, "
    "and how much weight each should get.",
    "The student already knows things before it sees a label. How could its own prior — its "
    "confidence, its predictions — correct the teacher?",
    "Distillation tricks: what exactly should the student imitate? Hard labels, the teacher's "
    "probabilities, something softer?",
    "Ensembles and committees: perhaps many students are wiser than one.",
    "Simplicity bias: strong students may prefer simple explanations of the data. Can that be "
    "used against the teacher's mistakes?",
    "Interpretability of representations: what structure do the student's features already "
    "have, before any supervision?",
    "The teacher's errors are not random noise. Learn robustly from noisy, systematic labels.",
    "Calibration: when is the teacher right, and does its confidence tell you?",
    "Iterate: let the student relabel the data and learn again from its own pseudo-labels.",
]
