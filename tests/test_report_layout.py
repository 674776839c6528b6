"""The report as a reader meets it: audit rows name their configuration (c1, c2, ...), every
column has a header, p-values are in scientific notation, and the long leaderboard folds away."""
from __future__ import annotations

import re

from aar_ray.report import section_audit, section_leaderboard, section_verdict
from aar_ray.report_html import pval

CANDIDATES = [{"name": "c1", "method": "info_max", "params": {"w": 0.1}, "public_delta": 0.05,
               "pgr": 0.3, "delta": 0.02, "ci_low": 0.01, "ci_high": 0.03, "p_holm": 3.2e-7,
               "confirmed": True},
              {"name": "c2", "method": "info_max", "params": {"w": 0.5}, "public_delta": 0.04,
               "pgr": 0.2, "delta": 0.0, "ci_low": -0.01, "ci_high": 0.01, "p_holm": 0.9,
               "confirmed": False}]


def _headers(html: str) -> list[list[str]]:
    return [re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", t)
            for t in re.findall(r"<thead>.*?</thead>", html)]


def test_p_values_in_scientific_notation():
    assert pval(3.2e-7) == "3.2e-07" and pval(0.5) == "5.0e-01" and pval(None) == "–"


def test_audit_rows_name_their_configuration_and_every_column_has_a_header():
    audit = {"rows": [{"method": "info_max", "params": {"w": 0.5}, "setting": "s1", "pgr": 0.2,
                       "ci_lo": 0.1, "ci_hi": 0.3, "in_lab_pgr": 0.25, "delta": -0.05,
                       "delta_vs_vanilla": 0.01, "p_holm": 1e-5, "verdict": "transfers"}]}
    html = section_audit({"audit": audit, "summary": {"candidates": CANDIDATES}})
    assert "<td>c2</td>" in html and "1.0e-05" in html
    assert all(h and all(h) for h in _headers(html))
    summary = {"verdict": "v", "candidates": CANDIDATES, "confirmed": [
        {**CANDIDATES[0], "label": "winner", "audit": {"s1": {
            "pgr": 0.2, "delta": 0.01, "delta_acc": 0.02, "ci_low_acc": 0.01,
            "ci_high_acc": 0.03, "mde_acc": 0.008, "status": "non-inferior"}}}]}
    html = section_verdict({"summary": summary})
    heads = _headers(html)
    assert heads[1][0] == "config" and all(heads[1]) and "<td>c1</td>" in html
    assert "3.2e-07" in html and "0.0000" not in html


def test_the_leaderboard_folds_away():
    board = [{"trial_id": "t1", "agent": "agent-0", "method": "vanilla", "params": {},
              "seeds": [0], "pgr": 0.3, "ci_lo": 0.2, "ci_hi": 0.4, "se": 0.05, "delta": 0.0,
              "delta_lo": -0.1, "delta_hi": 0.1, "p": 1e-12, "flags": []}]
    html = section_leaderboard({"leaderboard": board})
    assert html.startswith("<details>") and html.endswith("</details>")
    assert "1 entries" in html and "1.0e-12" in html
