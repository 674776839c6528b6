"""Typed configuration: dataclasses in, YAML/dicts parsed into them with errors that name the field.

Every knob of a campaign lives here so that the CLI, the jobs and the tests all read one schema.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from aar_ray.errors import ConfigError
from aar_ray.registry import MODELS, TASKS
from aar_ray.typed import from_dict, to_dict


def check(ok: bool, where: str, message: str) -> None:
    """Raise a ConfigError for `where` unless `ok`: the one validation idiom used by configs."""
    if not ok:
        raise ConfigError(f"{where}: {message}")


@dataclass
class StudentConfig:
    """How the strong student is trained: a head on frozen features, or the model fine-tuned."""

    mode: Literal["head", "finetune"] = "head"
    # 0 = linear head. A 256-unit MLP head copies the teacher's errors more (vanilla PGR 0.08
    # vs 0.27 linear, glove50 -> minilm/mpnet), so methods matter more: docs/results.md
    hidden: int = 256
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 1e-4

    def validate(self, where: str) -> None:
        check(self.hidden >= 0, f"{where}.hidden", "must be >= 0")
        check(self.epochs >= 1, f"{where}.epochs", "must be >= 1")
        check(self.lr > 0, f"{where}.lr", "must be > 0")
        check(self.batch_size >= 1, f"{where}.batch_size", "must be >= 1")


@dataclass
class FinetuneConfig:
    """The `finetune` student mode: Ray Train TorchTrainer settings (CPU here, GPUs on clusters)."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    epochs: int = 1
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    lora_r: int = 0  # 0 = full fine-tuning; > 0 = LoRA rank (peft)
    storage_path: str = ""  # "" = <campaign or cache dir>/ray_results
    start_timeout_s: int = 120  # fail fast instead of Ray Train's retry-forever default
    strong_model: str = "minilm"  # the model fine-tuned (a MODELS name with hf_path)
    bf16: bool = True  # bf16 autocast on GPU workers (ignored on CPU)

    def validate(self, where: str) -> None:
        for name in ("num_workers", "epochs", "batch_size", "start_timeout_s"):
            check(getattr(self, name) >= 1, f"{where}.{name}", "must be >= 1")
        check(self.cpus_per_worker > 0, f"{where}.cpus_per_worker", "must be > 0")
        check(self.lr > 0, f"{where}.lr", "must be > 0")
        check(self.max_length >= 8, f"{where}.max_length", "must be >= 8")
        check(self.lora_r >= 0, f"{where}.lora_r", "must be >= 0")
        MODELS.check(self.strong_model, f"{where}.strong_model")
        check(MODELS.get(self.strong_model).hf_path is not None,
              f"{where}.strong_model", "has no trainable weights (no hf_path)")

    def recipe(self) -> dict[str, Any]:
        """The fields that change what a run learns: the cache key of fine-tuned teachers and
        ceilings (where checkpoints go and how long to wait for workers do not)."""
        out = dataclasses.asdict(self)
        for where_or_when in ("storage_path", "start_timeout_s"):
            out.pop(where_or_when)
        return out


@dataclass
class SettingConfig:
    """One W2S setting: a task and a (weak, strong) model pair."""

    task: str = "tweets"
    weak: str = "glove50"
    strong: str = "minilm"
    max_examples: int = 0  # 0 = the task's default size; smaller for tests and quick runs
    test_size: int = 0  # 0 = the task's default
    # probe: a logistic regression on the weak model's frozen features (cheap);
    # finetune: the weak model itself fine-tuned on the labelled split with the campaign's
    # `finetune` settings, as the seed trains its weak teacher
    teacher: Literal["probe", "finetune"] = "probe"

    def validate(self, where: str) -> None:
        TASKS.check(self.task, f"{where}.task")
        MODELS.check(self.weak, f"{where}.weak")
        MODELS.check(self.strong, f"{where}.strong")
        check(self.max_examples >= 0, f"{where}.max_examples", "must be >= 0")
        check(self.test_size >= 0, f"{where}.test_size", "must be >= 0")
        weak = MODELS.get(self.weak)
        if self.teacher == "finetune":
            check(weak.hf_path is not None, f"{where}.weak",
                  f"{self.weak!r} has no trainable weights: use teacher: probe")
        else:
            check(weak.embed is not None, f"{where}.weak",
                  f"{self.weak!r} has no features to probe: use teacher: finetune")

    @property
    def label(self) -> str:
        return f"{self.task}:{self.weak}->{self.strong}"


@dataclass
class ClaudeConfig:
    """The Claude brain: model, retries, memory and the price table used for dollar budgets.
    No sampling knobs: API version 2026-10-21 (SDK 2.x) rejects `temperature`."""

    model: str = "claude-opus-5-5"
    max_tokens: int = 2048
    base_url: str = ""  # "" = the SDK default; tests point this at a local fake server
    max_retries: int = 4
    timeout_s: float = 120.0
    compact_after_tokens: int = 30_000  # summarise older turns into the notebook past this
    compact_growth: float = 0.4  # ... or once the prompt grew 40% past its post-summary size
    compact_after_messages: int = 80  # ... or past this many messages, whatever their size
    max_tool_result_chars: int = 16_000  # longer tool results are cut before the model sees them
    pause_after_failures: int = 3  # consecutive failed API calls before the agent pauses
    pause_s: float = 60.0
    # USD per million tokens: input, output, cache read, cache write (5-minute TTL)
    prices: dict[str, list[float]] = field(
        default_factory=lambda: {
            "claude-opus-5-5": [4.0, 20.0, 0.40, 5.0],
            "claude-opus-5": [5.0, 25.0, 0.50, 6.25],
            "claude-sonnet-5": [2.0, 10.0, 0.20, 2.5],
            "claude-haiku-4-5": [1.0, 5.0, 0.10, 1.25],
        }
    )

    def validate(self, where: str) -> None:
        check(self.max_tokens >= 1, f"{where}.max_tokens", "must be >= 1")
        check(self.max_retries >= 0, f"{where}.max_retries", "must be >= 0")
        check(self.timeout_s > 0, f"{where}.timeout_s", "must be > 0")
        check(self.compact_after_tokens >= 1, f"{where}.compact_after_tokens", "must be >= 1")
        check(self.compact_growth > 0, f"{where}.compact_growth", "must be > 0")
        check(self.compact_after_messages >= 4, f"{where}.compact_after_messages", "must be >= 4")
        check(self.max_tool_result_chars >= 200, f"{where}.max_tool_result_chars",
              "must be >= 200")
        check(self.pause_after_failures >= 1, f"{where}.pause_after_failures", "must be >= 1")
        check(self.pause_s >= 0, f"{where}.pause_s", "must be >= 0")
        for name, row in self.prices.items():
            check(len(row) == 4, f"{where}.prices.{name}",
                  "needs 4 numbers: input, output, cache_read, cache_write (USD per MTok)")


@dataclass
class BudgetConfig:
    """Hard limits; 0 means unlimited."""

    trials_per_agent: int = 6
    steps_per_agent: int = 60
    wall_clock_s: float = 0.0
    tokens_per_agent: int = 0
    dollars_per_agent: float = 0.0
    tokens_total: int = 0
    dollars_total: float = 0.0

    def validate(self, where: str) -> None:
        for f in dataclasses.fields(self):
            check(getattr(self, f.name) >= 0, f"{where}.{f.name}", "must be >= 0")


@dataclass
class ResourcesConfig:
    """What one trial asks of the cluster, and how many may run at once."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int = 0  # 0 = as many as the cluster's CPUs allow
    agents_per_actor: int = 1  # >1 packs several agents into one actor process (large fleets)
    scorer_gpus: float = 0.0  # the scorer embeds texts and trains the ceiling: a GPU with LLMs
    sandbox_cpu_seconds: int = 300  # limits for agents' own methods, run in the sandbox
    sandbox_memory_mb: int = 8192
    # on a node with no kernel boundary (Landlock + seccomp), run agents' methods under the audit
    # hook alone instead of refusing them (docs/threat-model.md)
    sandbox_allow_weak: bool = False
    # where bubblewrap cannot make user namespaces (many Kubernetes pods): "landlock" runs
    # agents' methods under Landlock + the seccomp allow-list with capabilities dropped;
    # "refuse" refuses them with one line (docs/clusters.md)
    sandbox_fallback: str = "landlock"
    # placement on a multi-node cluster (docs/scale.md): custom resources that the scorer,
    # forum and trial queue (head), the agents' actors and the trial tasks ask for, offered by
    # the nodes meant to host them; `spread` spreads agents and trials over the nodes
    head_resources: dict[str, float] = field(default_factory=dict)
    agent_resources: dict[str, float] = field(default_factory=dict)
    trial_resources: dict[str, float] = field(default_factory=dict)
    spread: bool = False
    trial_retries: int = 2  # reruns of a trial whose worker or node died under it

    def validate(self, where: str) -> None:
        for name in ("head_resources", "agent_resources", "trial_resources"):
            for k, v in getattr(self, name).items():
                check(v > 0, f"{where}.{name}.{k}", "must be > 0")
        check(self.trial_retries >= 0, f"{where}.trial_retries", "must be >= 0")
        check(self.cpus_per_trial > 0, f"{where}.cpus_per_trial", "must be > 0")
        check(self.gpus_per_trial >= 0, f"{where}.gpus_per_trial", "must be >= 0")
        check(self.max_concurrent_trials >= 0, f"{where}.max_concurrent_trials", "must be >= 0")
        check(self.agents_per_actor >= 1, f"{where}.agents_per_actor", "must be >= 1")
        check(self.sandbox_cpu_seconds >= 1, f"{where}.sandbox_cpu_seconds", "must be >= 1")
        check(self.sandbox_memory_mb >= 256, f"{where}.sandbox_memory_mb", "must be >= 256")
        check(self.sandbox_fallback in ("landlock", "refuse"), f"{where}.sandbox_fallback",
              "must be 'landlock' or 'refuse'")


@dataclass
class ScoringConfig:
    """What the scorer tells agents, and how often: the probing defence's knobs."""

    public_fraction: float = 0.5  # share of the test split used for campaign feedback
    feedback_decimals: int = 2  # PGR is reported rounded to this many decimals
    submissions_per_agent: int = 20
    ladder_margin: float = 0.02  # a new public score is shown only if it beats the best by this
    # teacher-use control: flag when PGR drops by less than this share of |PGR| once the
    # teacher's labels are shuffled; run for the top `control_top_k` leaderboard entries
    teacher_use_threshold: float = 0.5
    control_top_k: int = 5
    min_gap: float = 0.05  # warn before agents start when ceiling − teacher accuracy is less

    def validate(self, where: str) -> None:
        check(0.0 < self.public_fraction < 1.0, f"{where}.public_fraction", "must be in (0, 1)")
        check(0 <= self.feedback_decimals <= 4, f"{where}.feedback_decimals", "must be in [0, 4]")
        check(self.submissions_per_agent >= 1, f"{where}.submissions_per_agent", "must be >= 1")
        check(self.ladder_margin >= 0, f"{where}.ladder_margin", "must be >= 0")
        check(0 < self.teacher_use_threshold <= 1, f"{where}.teacher_use_threshold",
              "must be in (0, 1]")
        for name in ("control_top_k", "min_gap"):
            check(getattr(self, name) >= 0, f"{where}.{name}", "must be >= 0")


@dataclass
class AuditConfig:
    """Held-out settings for the transfer audit; never shown to agents."""

    settings: list[SettingConfig] = field(default_factory=list)
    top_k: int = 3
    margin: float = 0.01  # non-inferiority margin, accuracy scale (results/verdict.py)
    # fresh (no other stage's); 12 powers a 1-point margin (docs/statistics.md)
    seeds: list[int] = field(default_factory=lambda: list(range(1000, 1012)))

    def validate(self, where: str) -> None:
        for i, s in enumerate(self.settings):
            s.validate(f"{where}.settings[{i}]")
        check(self.top_k >= 1, f"{where}.top_k", "must be >= 1")
        check(0 < self.margin < 0.5, f"{where}.margin", "accuracy scale: 0.01 is 1 point")
        check(len(set(self.seeds)) == len(self.seeds) >= 2, f"{where}.seeds",
              "needs at least two distinct fresh seeds")


@dataclass
class ConfirmConfig:
    """The pre-registered confirmation stage, the campaign's last act: the top-K distinct
    configurations by public ΔPGR are written down, then re-run on fresh seeds that
    exploration never used, tested against vanilla on the private split with Holm over the K.
    The default size is set by the power calculation in docs/statistics.md."""

    top_k: int = 3
    choose: str = "family"  # best config of each top-K method; "config": the top-K configs
    seeds: list[int] = field(default_factory=lambda: list(range(100, 120)))
    alpha: float = 0.05  # family-wise, over the K
    power: float = 0.8  # for the minimum detectable ΔPGR that the verdict states
    disagreement: float = 0.08  # power design: share of items a candidate answers otherwise

    def validate(self, where: str) -> None:
        check(self.top_k >= 1, f"{where}.top_k", "must be >= 1")
        check(len(self.seeds) >= 2, f"{where}.seeds", "needs at least two fresh seeds")
        check(len(set(self.seeds)) == len(self.seeds), f"{where}.seeds", "must be distinct")
        check(0 < self.alpha < 1, f"{where}.alpha", "must be in (0, 1)")
        check(0 < self.power < 1, f"{where}.power", "must be in (0, 1)")
        check(0 < self.disagreement <= 1, f"{where}.disagreement", "must be in (0, 1]")
        check(self.choose in ("family", "config"), f"{where}.choose", "family or config")


@dataclass
class DashboardConfig:
    """The Ray dashboard of an embedded run (a cluster runs its own), on 127.0.0.1 only."""

    enabled: bool = False
    port: int = 0  # 0 = Ray's default, 8265, or the next free port
    metrics_port: int = 0  # the Prometheus export port; 0 = a free one

    def validate(self, where: str) -> None:
        for name in ("port", "metrics_port"):
            check(0 <= getattr(self, name) < 65536, f"{where}.{name}", "must be a port or 0")


@dataclass
class WandbConfig:
    project: str = "aar-ray"
    mode: Literal["offline", "online", "disabled"] = "offline"


SWEEP_AGENT_PREFIX = "sweep-"  # a sweep's trials run under the agent id sweep-<search>


@dataclass
class SweepConfig:
    """The sweep explorer (`explorer: sweep`): a Ray Tune search over the method registry in
    place of the agents, through the same trial queue and scorer, under one agent id."""

    search: Literal["optuna", "random"] = "optuna"  # optuna = Optuna's TPE sampler
    trials: int = 0  # 0 = the fleet's budget: agents × budget.trials_per_agent

    def validate(self, where: str) -> None:
        check(self.trials >= 0, f"{where}.trials", "must be >= 0")


@dataclass
class CampaignConfig:
    """A whole campaign: one setting researched by N agents with different starting directions."""

    name: str = "campaign"
    setting: SettingConfig = field(default_factory=SettingConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    trial_seeds: int = 0  # seeds a trial runs on unless it names them (0 = all `seeds`)
    agents: int = 9
    directions: list[str] = field(default_factory=list)  # [] = the built-in nine
    brain: Literal["offline", "claude", "fake-claude"] = "offline"
    claude: ClaudeConfig = field(default_factory=ClaudeConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    root: str = "campaigns"  # campaign directories are created under this folder
    cache_dir: str = ""  # "" = $AAR_CACHE or ~/.cache/aar-ray
    seed: int = 0  # the campaign's own randomness: offline brains and the sweep's sampler
    explorer: Literal["agents", "sweep"] = "agents"  # who proposes the trials
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def validate(self, where: str = "config") -> None:
        check(bool(self.name) and "/" not in self.name, f"{where}.name", "must be a plain name")
        check(len(set(self.seeds)) == len(self.seeds) >= 1 and min(self.seeds) >= 0,
              f"{where}.seeds", "needs at least one seed; distinct, none negative")
        check(self.agents >= 1, f"{where}.agents", "must be >= 1")
        if self.directions:
            check(len(self.directions) >= self.agents or len(self.directions) >= 9,
                  f"{where}.directions", "give one per agent (or at least nine to cycle through)")
        for name in ("setting", "student", "finetune", "claude", "budget", "resources",
                     "scoring", "audit", "sweep", "confirm", "dashboard"):
            getattr(self, name).validate(f"{where}.{name}")
        check(0 <= self.trial_seeds <= len(self.seeds), f"{where}.trial_seeds",
              f"must be in [0, {len(self.seeds)}] (the number of seeds)")
        check(not set(self.confirm.seeds) & set(self.seeds), f"{where}.confirm.seeds",
              "must be fresh: none of the exploration's `seeds`")
        check(not set(self.audit.seeds) & (set(self.seeds) | set(self.confirm.seeds)),
              f"{where}.audit.seeds", "must be fresh: none of `seeds` or `confirm.seeds`")
        for i, s in enumerate(self.audit.settings):
            check((s.task, s.weak, s.strong) != (self.setting.task, self.setting.weak,
                                                 self.setting.strong),
                  f"{where}.audit.settings[{i}]", "must differ from the campaign's own setting")
        if self.explorer == "sweep":
            check(self.exploration_trials() >= 1, f"{where}.sweep.trials",
                  "must be >= 1 when budget.trials_per_agent is 0 (unlimited)")

    def default_trial_seeds(self) -> list[int]:
        """The seeds a trial runs on when it names none: the first `trial_seeds`, so that a
        result can be replicated on the others."""
        return list(self.seeds[:self.trial_seeds or len(self.seeds)])

    @property
    def sweep_agent(self) -> str:
        return f"{SWEEP_AGENT_PREFIX}{self.sweep.search}"

    def exploration_trials(self) -> int:
        """Trials the explorer may run in all (0 = unlimited): the fleet's, agents ×
        trials_per_agent, unless a sweep is given its own count."""
        fleet = self.agents * self.budget.trials_per_agent
        return (self.sweep.trials or fleet) if self.explorer == "sweep" else fleet

    def trial_budget(self, agent: str) -> int:
        """Trials `agent` may run (0 = unlimited). The sweep is one searcher standing in for
        the whole fleet, so its one agent id gets the whole exploration budget."""
        if self.explorer == "sweep" and agent == self.sweep_agent:
            return self.exploration_trials()
        return self.budget.trials_per_agent

    def submission_budget(self, agent: str) -> int:
        """Submissions `agent` may make: the sweep submits each of its trials once."""
        if self.explorer == "sweep" and agent == self.sweep_agent:
            return self.exploration_trials()
        return self.scoring.submissions_per_agent


# ---- files -----------------------------------------------------------------------------------


def load_campaign(path: str | Path) -> CampaignConfig:
    """Read and validate a campaign YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    cfg = from_dict(CampaignConfig, data or {}, where=path.name)
    cfg.validate(path.name)
    return cfg


def save_campaign(cfg: CampaignConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
