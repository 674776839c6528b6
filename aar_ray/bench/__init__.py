"""`make bench`: benchmark suites; each writes its numbers into bench/results.json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.json"


def merge_results(section: str, values: dict[str, Any]) -> None:
    """Read-modify-write: suites run apart, so each updates only its own keys."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = {**data.get(section, {}), **values}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
