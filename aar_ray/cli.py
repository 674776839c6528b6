"""The `aar` command: one subcommand per user task, each a thin edge over the library."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from aar_ray import exits, train
from aar_ray.config import ConfigError

# the campaign `make run` runs: `aar trial` takes its defaults from it
DEFAULT_CAMPAIGN = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "embedded.yaml"


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items: list[str]) -> dict[str, Any]:
    """`--param k=v` pairs; values are JSON when they parse (numbers, booleans), else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected key=value")
        out[key] = _parse_value(value)
    return out


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2`: distinct integers >= 0, no empty item (`0,,1` is a typo, not 0,1)."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, no empty "
                          "items") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: expected distinct integers >= 0")
    return seeds


def trial_config(args: argparse.Namespace):
    """`aar trial`'s TrialConfig: the setting, student and trial seeds of a campaign config
    (by default the default campaign's, so that its numbers match that campaign's board), with
    whichever flags were given on top."""
    from dataclasses import replace

    from aar_ray.config import load_campaign
    from aar_ray.w2s.trial import TrialConfig

    base = load_campaign(args.config)
    setting = replace(base.setting, **_given(task=args.task, weak=args.weak, strong=args.strong,
                                             max_examples=args.max_examples,
                                             test_size=args.test_size))
    setting.validate("trial")
    student = replace(base.student, **_given(mode=args.mode, hidden=args.hidden,
                                             epochs=args.epochs))
    student.validate("trial.student")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else base.default_trial_seeds()
    return TrialConfig(setting, args.method, parse_params(args.param), seeds, student,
                       base.finetune)


def _given(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def cmd_trial(args: argparse.Namespace) -> int:
    from aar_ray.w2s.trial import run_trial

    cfg = trial_config(args)
    if args.method_file:
        from aar_ray.lab import method_file

        out = method_file.trial(args.config, cfg, args.method_file)
        if out["status"] == "error":  # the agent's view of its trial, nothing more
            print(json.dumps(out) if args.json else f"trial error: {out['error']}")
            return 1
        summary = out["summary"]
    else:
        summary = run_trial(cfg).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['setting']}  method={summary['method']}  params={cfg.params}")
    print(f"{'seed':>4} {'weak':>7} {'ceiling':>8} {'transfer':>9} {'PGR':>7}")
    for r in summary["per_seed"]:
        p = "n/a" if r["pgr"] is None else f"{r['pgr']:.3f}"
        print(f"{r['seed']:>4} {r['weak_acc']:>7.3f} {r['ceiling_acc']:>8.3f} "
              f"{r['transfer_acc']:>9.3f} {p:>7}")
    print("mean ± SE: " + "  ".join(f"{k}={_fmt(summary[k])}"
                                    for k in ("weak_acc", "ceiling_acc", "transfer_acc")))
    p = summary["pgr"]
    print("PGR (pooled over seeds, seed x item SE, 95% CI): " + (
        "n/a (no gap)" if p["mean"] is None else
        f"{p['mean']:.3f} ± {p['se']:.3f} [{p['ci_lo']:.3f}, {p['ci_hi']:.3f}]"))
    return 0


def _fmt(ms: dict[str, float | None]) -> str:
    if ms["mean"] is None:
        return "n/a (no gap)"
    return f"{ms['mean']:.3f}" + (f"±{ms['se']:.3f}" if ms["se"] is not None else "")


def build_parser() -> argparse.ArgumentParser:
    """The subcommands. Builds without reading any catalog (a broken plugin must fail only
    the commands that read it, inside `main`'s error handler); `aar methods` lists them."""
    p = argparse.ArgumentParser(prog="aar", description="Automated alignment research on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("trial", help="run one W2S trial: weak, ceiling, transfer and PGR per seed")
    t.add_argument("--config", default=str(DEFAULT_CAMPAIGN),
                   help="campaign YAML whose setting, seeds and student are the defaults of "
                        "every flag below (default: the default campaign, %(default)s)")
    t.add_argument("--task", help="a registered task (see `aar methods`)")
    t.add_argument("--weak", help="a registered model (see `aar methods`)")
    t.add_argument("--strong", help="a registered model (see `aar methods`)")
    t.add_argument("--method", default="vanilla", help="a registered method (see `aar methods`)")
    t.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="method parameter (repeatable); see `aar methods`")
    t.add_argument("--seeds", help="comma-separated (default: the campaign's trial seeds)")
    t.add_argument("--mode", choices=["head", "finetune"])
    t.add_argument("--hidden", type=int, help="student head width (0 = linear)")
    t.add_argument("--epochs", type=int, help="student epochs")
    t.add_argument("--max-examples", type=int, help="0 = the task's whole data set")
    t.add_argument("--test-size", type=int, help="0 = the task's default")
    t.add_argument("--method-file", metavar="PATH.py",
                   help="a method written as an agent would (`write_method`), run in exactly "
                        "the agents' sandbox and limits; prints what the agent would see")
    t.add_argument("--json", action="store_true")
    t.set_defaults(fn=cmd_trial)

    r = sub.add_parser("run", help="run a research campaign (embedded Ray, or RAY_ADDRESS)")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", help="campaign YAML (see jobs/configs/)")
    g.add_argument("--resume", metavar="DIR", help="continue the campaign in DIR")
    r.add_argument("--brain", choices=["offline", "claude", "fake-claude"],
                   help="override the config's brain")
    r.add_argument("--agents", type=int, help="override the number of agents")
    r.add_argument("--root", help="where campaign directories are created")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--dashboard", action="store_true",
                   help="start the embedded Ray with its dashboard on 127.0.0.1 (prints the URL)")
    r.set_defaults(fn=cmd_run)

    rt = sub.add_parser("redteam", help="run adversarial agents against a small campaign")
    rt.add_argument("--config", default="jobs/configs/redteam.yaml")
    rt.add_argument("--root", help="where the red-team campaign directory is created")
    rt.set_defaults(fn=cmd_redteam)

    st = sub.add_parser("status", help="progress of a campaign (its directory, or RAY_ADDRESS)")
    st.add_argument("campaign_dir", nargs="?", help="default: the live campaign on the cluster")
    st.add_argument("--address", default=None,
                    help="HOST:PORT (GCS), ray://HOST:PORT or http://HOST:8265 (default: "
                         "RAY_ADDRESS, else the cluster last started here, as `ray status`)")
    st.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    st.add_argument("--interval", type=float, default=2.0)
    st.set_defaults(fn=cmd_status)

    rp = sub.add_parser("report", help="write one self-contained HTML report of a campaign")
    rp.add_argument("campaign_dir")
    rp.add_argument("--out", help="default: CAMPAIGN_DIR/report.html")
    rp.set_defaults(fn=cmd_report)

    cf = sub.add_parser("confirm", help="pre-register your own configurations, then confirm "
                        "them on fresh seeds, audit and label them (no exploration)")
    cf.add_argument("--config", required=True, help="campaign YAML (setting, seeds, audit)")
    cf.add_argument("--candidate", action="append", required=True, metavar="'METHOD {JSON}'",
                    help='e.g. \'confidence_filter {"keep": 0.6}\'; repeat for more')
    cf.add_argument("--method-file", action="append", default=[], metavar="PATH.py",
                    help="your own method (as `aar trial --method-file`); a candidate names it "
                         "by the file's stem; it runs in the agents' sandbox")
    cf.add_argument("--root", help="where the campaign directory goes (default: config)")
    cf.set_defaults(fn=cmd_confirm)

    a = sub.add_parser("audit", help="re-run a campaign's top methods on held-out settings")
    a.add_argument("campaign_dir")
    a.add_argument("--top", type=int, default=None, help="how many configs (default: config)")
    a.set_defaults(fn=cmd_audit)

    rr = sub.add_parser("rerun", help="reproduce one trial from its recorded provenance")
    rr.add_argument("trial_id")
    rr.add_argument("--campaign", help="its campaign directory (default: search campaigns/)")
    rr.set_defaults(fn=cmd_rerun)

    sw = sub.add_parser("sweep", help="a campaign explored by a Ray Tune sweep over the methods "
                                      "instead of agents: the baseline the lab must beat")
    sw.add_argument("--config", required=True, help="campaign YAML (see jobs/configs/)")
    sw.add_argument("--trials", type=int, help="default: the config's sweep.trials, else "
                                               "agents x budget.trials_per_agent")
    sw.add_argument("--search", choices=["optuna", "random"],
                    help="optuna = TPE (default: the config's sweep.search)")
    sw.add_argument("--root", help="where campaign directories are created")
    sw.add_argument("--no-progress", action="store_true")
    sw.set_defaults(fn=cmd_run, resume=None, brain=None, agents=None)

    c = sub.add_parser("compare", help="two finished campaigns side by side (lab vs sweep)")
    c.add_argument("campaign_a")
    c.add_argument("campaign_b")
    c.set_defaults(fn=cmd_compare)

    m = sub.add_parser("methods", help="list the registered methods and their parameters")
    m.set_defaults(fn=cmd_methods)
    return p


def cmd_run(args: argparse.Namespace) -> int:
    from aar_ray.config import load_campaign, save_campaign
    from aar_ray.lab.campaign import format_leaderboard, format_verdict, run_campaign
    from aar_ray.testing.fake_anthropic import serve_fake_claude

    cfg = None
    if args.config:
        cfg = load_campaign(args.config)
        if args.brain:
            cfg.brain = args.brain
        if args.agents is not None:  # `--agents 0` is refused by validate, not ignored
            cfg.agents = args.agents
        if args.root:
            cfg.root = args.root
        if args.command == "sweep":  # a Ray Tune sweep explores instead of the agents
            cfg.explorer = "sweep"
            cfg.sweep.search = args.search or cfg.sweep.search
            cfg.sweep.trials = args.trials or cfg.sweep.trials
        cfg.validate(args.config)
    dashboard = getattr(args, "dashboard", False)
    if cfg is None:  # resuming: operational switches, recorded in the campaign's config
        path = Path(args.resume) / "config.yaml"
        resumed = load_campaign(path)
        changed = dashboard and not resumed.dashboard.enabled
        resumed.dashboard.enabled |= dashboard
        if serve_fake_claude(resumed) or changed:
            save_campaign(resumed, path)
    else:
        cfg.dashboard.enabled |= dashboard
        serve_fake_claude(cfg)  # the offline demo's agents talk to a fake served from here
    try:
        summary = run_campaign(cfg, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        print("\naar: stopped; continue with `aar run --resume <campaign dir>`", file=sys.stderr)
        return exits.STOPPED
    print(format_leaderboard(summary))
    print(format_verdict(summary))
    d = summary["diversity"]
    overlap = d["mean_method_overlap"]  # None with a single explorer
    print(f"diversity: {d['team_methods']} methods, {d['team_regions']} parameter regions, "
          f"mean method overlap between agents "
          f"{'n/a' if overlap is None else f'{overlap:.2f}'}")
    print(f"{summary['trials']['done']} trials done, {summary['trials']['error']} failed, "
          f"in {summary['seconds']:.0f} s")
    print(f"campaign directory: {summary['campaign_dir']}")
    return 0


def cmd_redteam(args: argparse.Namespace) -> int:
    from aar_ray.config import load_campaign
    from aar_ray.sandbox.redteam import format_table, redteam

    cfg = load_campaign(args.config)
    if args.root:
        cfg.root = args.root
    rows = redteam(cfg)
    print(format_table(rows))
    bad = [r for r in rows if r["outcome"] in ("NOT STOPPED", "LEAKED")]
    return 1 if bad else 0


def cmd_status(args: argparse.Namespace) -> int:
    from aar_ray.status import status

    return status(args.campaign_dir, args.address, args.watch, args.interval)


def cmd_report(args: argparse.Namespace) -> int:
    from aar_ray.report import write_report
    from aar_ray.results.records import campaign_dir

    campaign_dir(args.campaign_dir)
    print(f"report: {write_report(args.campaign_dir, args.out)}")
    return 0


def _cell(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def audit_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of `audit` rows, notes below it."""
    out = ["| method | params | setting | PGR [95% CI] | vanilla PGR | in-lab PGR | Δ (held-out"
           " − in-lab) | ΔPGR vs vanilla | p (Holm) | verdict |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for r in rows:
        ci = ("–" if r["pgr"] is None
              else f"{_cell(r['pgr'])} [{_cell(r['ci_lo'])}, {_cell(r['ci_hi'])}]")
        p = "–" if r["p_vs_vanilla"] is None else f"{r['p_vs_vanilla']:.3g} ({r['p_holm']:.3g})"
        flag = " ⚠" if r["code_changed"] else ""
        out.append(f"| {r['method']}{flag} | {json.dumps(r['params'])} | {r['setting']} | {ci} | "
                   f"{_cell(r['vanilla_pgr'])} | {_cell(r['in_lab_pgr'])} | "
                   f"{_cell(r['delta'], '+.3f')} | {_cell(r['delta_vs_vanilla'], '+.3f')} | "
                   f"{p} | {r['verdict']} |")
        if r["note"]:
            notes.append(f"- {r['method']} on {r['setting']}: {r['note']}")
    return "\n".join(out + ([""] + sorted(set(notes)) if notes else []))


def cmd_confirm(args: argparse.Namespace) -> int:
    from aar_ray.config import load_campaign
    from aar_ray.lab.campaign import format_verdict
    from aar_ray.lab.hypothesis import confirm

    cfg = load_campaign(args.config)
    if args.root:
        cfg.root = args.root
    summary = confirm(cfg, args.candidate, args.method_file)
    print(format_verdict(summary))
    print(f"campaign directory: {summary['campaign_dir']}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from aar_ray.results.audit import audit

    print(audit_table(audit(args.campaign_dir, args.top)))
    print(f"\nwritten to {args.campaign_dir}/audit.json")
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    from aar_ray.results.records import campaigns_with_trial
    from aar_ray.results.rerun import rerun

    if args.campaign:
        campaign = args.campaign
    else:  # the campaign whose scorer recorded this trial
        found = campaigns_with_trial("campaigns", args.trial_id)
        if not found:
            raise ConfigError(f"no campaign under campaigns/ has trial {args.trial_id!r}; "
                              "pass --campaign DIR")
        campaign = str(found[0])
    r = rerun(campaign, args.trial_id)
    print(json.dumps(r, indent=2))
    verdict = "reproduced within its 95% CI" if r["within_ci"] else "NOT within its 95% CI"
    print(f"{args.trial_id}: original PGR {r['original_pgr']:.3f}, rerun {r['rerun_pgr']:.3f}: "
          f"{verdict}")
    return 0 if r["within_ci"] else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from aar_ray.results.compare import campaign_facts, format_compare

    print(format_compare(campaign_facts(args.campaign_a), campaign_facts(args.campaign_b)))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from aar_ray.registry import MODELS, TASKS
    from aar_ray.w2s.methods import METHODS, describe

    print(f"tasks: {', '.join(TASKS.names())}\nmodels: {', '.join(MODELS.names())}\nmethods:")
    for name in METHODS.names():
        d = describe(name)
        print(f"{name} [modes: {', '.join(d['modes'])}]: {d['summary'].splitlines()[0]}")
        for k, v in d["params"]["properties"].items():
            rng = v.get("enum") or [v.get("minimum"), v.get("maximum")]
            print(f"    {k} ({v['type']}, default {v['default']}, allowed {rng}): "
                  f"{v.get('description', '')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    train.install()  # `aar trial --mode finetune` and the audit fine-tune on Ray Train
    args = build_parser().parse_args(argv)  # argparse's own errors exit 2 as well
    try:
        return args.fn(args)
    except Exception as e:  # the expected failures, one line each (aar_ray.exits)
        known = exits.classify(e)
        if known is None:
            raise
        print(known[1], file=sys.stderr)
        return known[0]


if __name__ == "__main__":
    sys.exit(main())
