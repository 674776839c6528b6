"""`aar trial --method-file PATH.py`: a method from a file, run as an agent's would be.

The file goes through `write_method`'s checks, then every seed through `custom_methods.run_any`
with the campaign's sandbox limits (bubblewrap, or the configured fallback), in a throwaway
campaign directory. What comes back is what the agent's `trial_status` would show: the scores,
or the error text the agent may see (`integrity.agent_error`). A researcher tries a method
before agents use it; the red team attacks through it."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aar_ray.sandbox import custom_methods

AGENT = "method-file"


def trial(config_path: str, cfg: Any, path: str) -> dict[str, Any]:
    """{"status": "done", "summary": ...} or {"status": "error", "error": <agent's view>,
    "event": <sandbox event or None>}. `cfg` is `aar trial`'s TrialConfig."""
    from aar_ray.config import load_campaign
    from aar_ray.lab.integrity import agent_error
    from aar_ray.lab.trials import error_text
    from aar_ray.w2s.methods import METHODS
    from aar_ray.w2s.trial import run_trial

    source = Path(path).read_text()
    name = Path(path).stem.lower()
    custom_methods.check_source(name, source, set(METHODS.names()))
    campaign = load_campaign(config_path)
    method = custom_methods.method_id(AGENT, name)
    with tempfile.TemporaryDirectory(prefix="aar-method-file-") as tmp:
        def predict(inputs: Any) -> Any:
            return custom_methods.run_any(campaign, tmp, method, cfg.params, [inputs],
                                          source=source)[0]
        try:
            summary = run_trial(cfg, predict=predict).summary()
        except Exception as e:  # what the trial queue records; the agent sees agent_error
            return {"status": "error", "error": agent_error(error_text(e)),
                    "event": getattr(e, "event", None)}
    return {"status": "done", "summary": {**summary, "method": method}}
