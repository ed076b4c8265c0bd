"""The typed sections of a run's configuration, each field with its default and why.

A profile (configs/*.yaml, read by config.loader) fills these; config.build checks every value
against its field's type and config.rules, and `RunConfig.fingerprint` names the result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from patarm_kit.config.rules import SAMPLED_MEAN_MIN, SAMPLED_READOUTS, ConfigError, readout_name


def fingerprint_of(values: dict[str, Any]) -> str:
    """The fingerprint of a config as a plain dict (e.g. as recorded in a manifest)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class SourceConfig:
    """One data source: a built-in name, a local file, or a hub dataset id."""

    name: str
    role: str = "train"  # "train": split into train/dev/test; "bench": evaluation only
    limit: int | None = None
    bad_rows: str = "error"  # "error" stops the load; "skip" drops and reports the row
    subsets: list[str] | None = None  # keep only pairs of these subsets (e.g. one instruction type); None: all
    revision: str | None = None  # a hub dataset's commit (40 hex digits), recorded with its data; None: the hub's main


@dataclass
class DataConfig:
    data_dir: str | None = None
    sources: list[SourceConfig] = field(default_factory=list)
    split_fractions: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "dev": 0.1, "test": 0.1}
    )


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"
    dtype: str = "bfloat16"
    cache_dir: str = ".cache/models"
    enable_thinking: bool | None = None  # Qwen3 templates only; None leaves the template alone
    torch_threads: int | None = None
    # A hub model's commit (40 hex digits): every reader (transformers, vLLM, TRL's vLLM, BT) reads the files of
    # that commit (judging.models.resolve_model_path). None: the hub's main as it is when a stage loads it.
    revision: str | None = None


@dataclass
class SamplingConfig:
    """How the judge generates for one use: n judgments per response, temperature (0 = greedy),
    top_p (nucleus) and max_new_tokens (a judgment cut there is invalid: truncated).

    Each use has its own block, read by one stage only, so a key has one meaning:

      judge.preview              notebook 02: the untrained judge on judge.preview_pairs training pairs
      sft.checks                 the SFT warm-up checks (base vs warmed-up judge on dev pairs);
                                 sample them as par.rollouts to see what PAR will face
      par.rollouts               PAR training (GRPO): n rollouts per (pair, side) form one group
      eval.sampling              the benchmark stage and `patarm-kit eval`: n judgments per response,
                                 averaged (the votes; --votes sets n); greedy by default. Judges
                                 that give one verdict (pairwise, length, random, bt) use n = 1
      eval.votes_curve_sampling  the votes curve: n sampled judgments per response, scored with
                                 the first k for each k in eval.votes_curve (the last k is n)
      eval.pairwise_sampling     the pairwise judge: one verdict per order, with the token budget
                                 a comparison of two responses needs (None: eval.sampling)
      eval.sampled_mean          the sampled-mean and sampled-expected readouts: k >= 4 judgments per
                                 response sampled as PAR's rollouts are, beside eval.sampling's
                                 (None: not measured)

    A profile's block is merged key by key into the block of the profile it extends (cpu.yaml
    spells out all four keys of each); a block written from nothing takes the defaults below
    for the keys it leaves out.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128

    def check(self, key: str, min_n: int = 1) -> None:
        """Refuse a block no generation can run with; the error names the block's key."""
        if self.n < min_n:
            raise ConfigError(f"{key}.n: must be at least {min_n}, got {self.n}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"{key}.max_new_tokens: must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"{key}.temperature: must be at least 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{key}.top_p: must be in (0, 1], got {self.top_p}")
        if self.n > 1 and self.temperature == 0:
            raise ConfigError(f"{key}: n={self.n} judgments per response need temperature > 0 "
                              "(greedy decoding would repeat one judgment)")


@dataclass
class JudgeConfig:
    """How the generative judge reads and is run, whatever the use; how it samples is per use (SamplingConfig)."""

    rubric_file: str | None = None
    batch_size: int = 16  # engine hf: sequences per generate call (vLLM schedules every request of a call itself)
    max_prompt_tokens: int = 384
    max_response_tokens: int = 256
    # The generation engine (judging/engine.py): "vllm" (vLLM, its CPU build on CPUs: 6-7x faster on the
    # judge workload) or "hf" (transformers generate: the reference, and for machines without vLLM).
    engine: str = "vllm"
    kv_cache_gib: int = 1  # vLLM's KV cache; 1 GiB holds ~46k tokens of SmolLM2 (its CPU build would take 92% of memory)
    max_model_len: int = 2048  # vLLM: the longest judge prompt + judgment, in tokens
    compile: bool = True  # every vLLM engine (judge, PAR rollouts): torch.compile at start (~1 min, faster generation)
    voting: str = "mean"  # "mean" or "majority"
    preview_pairs: int = 4  # notebook 02: training pairs the base judge scores before any training
    preview: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, max_new_tokens=160))  # notebook 02

    def __post_init__(self) -> None:
        self.preview.check("judge.preview")


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05  # SFT and BT; GRPO (PAR, policies) runs with dropout off (train.grpo_args)
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class SftConfig:
    enabled: bool = True
    targets: str = "format"  # "facts", "labels", "format" (the first warm-up) or "paper": training/sft.py
    n_pairs: int | None = 64  # training pairs (2 examples each), or paper rows; None: all
    max_steps: int = 40
    learning_rate: float = 2e-4
    warmup_steps: int = 0
    batch_size: int = 8
    max_length: int = 1024  # longer examples are dropped and counted, never cut
    gradient_checkpointing: bool = False  # recompute activations: off on CPU (costs time), on for 8B at 4k tokens (plan.py)
    # targets "paper": the paper's judgments, AIJian/PaTaRM's sft_train_35.6k.jsonl on the hub at paper_revision
    # (a commit; None: main), or a local copy of that file (paper_file, .jsonl in any layout training/sft.py reads)
    paper_revision: str | None = None
    paper_file: str | None = None
    n_check_pairs: int = 16  # held-out (dev) pairs for the warm-up checks
    checks: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, max_new_tokens=160))  # the warm-up checks

    def __post_init__(self) -> None:
        self.checks.check("sft.checks")


@dataclass
class GrpoSettings:
    """How GRPO updates a LoRA adapter, beyond steps, rate and rollouts (TRL's GRPOConfig names).
    PAR's block holds these and the downstream policies have their own (`policy.grpo`): changing
    one never changes the other. Every setting whose TRL default has moved between versions is set here."""

    # TRL's fused LM head projects every position onto the vocabulary where there is no Triton
    # (CPU) and masks the prompt afterwards; True projects the completion tokens only there
    # (same log-probabilities; the prompt is ~80% of a judge rollout's tokens). See training/grpo.py.
    completion_only_logprobs: bool = True
    lr_scheduler_type: str = "linear"
    # KL weight. The reference is the adapter training starts from (PAR: the warm-up; TRL keeps a
    # frozen copy of it as "ref"), else the base model. With beta > 0 TRL logs the KL to that
    # reference each step (one more forward pass per step); 0: no reference.
    beta: float = 0.0
    entropy_coef: float | None = None  # TRL's entropy bonus (its loss minus coef x mean token entropy); None: off
    loss_type: str = "dapo"
    scale_rewards: str = "group"  # "group", "batch" or "none"
    epsilon: float = 0.2
    num_iterations: int = 1
    mask_truncated_completions: bool = False
    bf16: bool = False  # mixed precision on GPUs
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    report_to: list[str] = field(default_factory=list)  # e.g. ["tensorboard"] (pip install tensorboard)
    vllm_mode: str = "colocate"  # "colocate" (inside the trainer) or "server" (trl vllm-serve, GPUs only)
    vllm_gpu_memory_utilization: float = 0.3
    # TRL's importance-sampling correction for rollouts sampled by vLLM: an extra no-grad
    # forward pass over every completion, to correct for vLLM's kernels differing from the
    # trainer's. Needed where they differ much (bf16 on GPUs); see README for the CPU numbers.
    vllm_importance_sampling: bool = True


@dataclass
class ParConfig(GrpoSettings):
    """PAR training (GRPO): what PAR rewards and trains on, and its own GRPO settings (GrpoSettings)."""

    enabled: bool = True
    mode: str = "binary"  # "binary" or "graded" (PAR), or "format" (the format reward alone: a control)
    # A control: swap chosen and rejected in a seeded half of the training pairs, so the labels
    # carry no preference; a judge trained on them must land near chance.
    shuffle_labels: bool = False
    # Ablations trained in the same run, after `par`: name -> settings of this block that differ
    # (e.g. {shuffled: {shuffle_labels: true}}); each is judge `par-<name>`, in <run>/par-<name>/.
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The learning curve: held-out (dev) accuracy of the warm-up and of every saved checkpoint
    # (par.save_steps) on this many dev pairs, greedy as eval.sampling; None: no curve.
    learning_curve_pairs: int | None = None
    format_weight: float = 0.1
    n_pairs: int | None = 16  # None: every training pair
    max_steps: int = 4
    pairs_per_step: int = 2  # both sides of each pair are judged in the same step
    # GRPO's rollouts (TRL's num_generations, temperature, top_p, max_completion_length):
    # n rollouts per (pair, side) form one group, so n >= 2
    rollouts: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, max_new_tokens=160))
    gradient_accumulation_steps: int = 1  # splits a step's completions into micro-batches (memory)
    # Train the LoRA weights of the top N transformer layers only (None: all). The backward
    # pass then stops at layer L-N and the layers below keep no activations for it.
    trainable_layers: int | None = None
    learning_rate: float = 1e-5  # TRL's advice for LoRA (1e-6 is its full fine-tuning default)
    save_steps: int = 2
    use_vllm: bool = False  # rollouts with vLLM (on CPU: colocate, with judge.kv_cache_gib and judge.max_model_len)

    def __post_init__(self) -> None:
        self.rollouts.check("par.rollouts", min_n=2)


@dataclass
class BtConfig:
    """The scalar Bradley-Terry baseline (training/bt.py), trained on the judge's training pairs."""

    n_pairs: int | None = 64  # the seeded draw the judge's stages make; None: every training pair
    max_steps: int = 16
    learning_rate: float = 2e-4
    batch_size: int = 4  # pairs per step; each step reads twice as many sequences
    max_length: int = 512  # training drops longer pairs (counted); scoring keeps the first tokens
    gradient_checkpointing: bool = False  # as sft.gradient_checkpointing


@dataclass
class EvalConfig:
    """The benchmark stage: which judges on which benches, how many items, how judgments are scored."""

    judges: list[str] = field(default_factory=lambda: ["length", "random", "base"])
    benches: list[str] = field(default_factory=lambda: ["rmbench", "rewardbench", "pairs:hh-rlhf"])
    limit: int | dict[str, int | None] | None = 8  # items per domain/subset; a mapping sets it per bench
    ties: str = "half"
    n_boot: int = 1000
    # every judge on every bench: n judgments per response, averaged (votes); one greedy judgment
    # by default, as RewardBench's generative runner
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0))
    votes_curve: list[int] = field(default_factory=list)  # accuracy vs number of votes (notebook 04)
    votes_curve_sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4))  # n = the curve's last point
    pairwise_sampling: SamplingConfig | None = None
    # The sampled-mean readout (what PAR trains: the judgment distribution at the rollout temperature,
    # which one greedy judgment cannot show): every generative pointwise evaluation also draws n >= 4
    # judgments per response, seeded by the response, and scores it by their mean valid score.
    # None: not measured (n more generations per response). The learning curve measures it always.
    sampled_mean: SamplingConfig | None = None
    votes_curve_judge: str = "par"
    votes_curve_bench: str = "pairs:hh-rlhf"
    votes_curve_limit: int | None = None  # items for the curve; None: the bench's eval.limit
    paired: list[list[str]] = field(default_factory=list)  # [judge A, judge B]: A - B on the same items
    # The one comparison stated before the run ({a, b, bench, readout}); every other is secondary.
    primary: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.sampling.check("eval.sampling")
        self.votes_curve_sampling.check("eval.votes_curve_sampling")
        if self.pairwise_sampling is not None:
            self.pairwise_sampling.check("eval.pairwise_sampling")
        if self.sampled_mean is not None:
            self.sampled_mean.check("eval.sampled_mean", min_n=SAMPLED_MEAN_MIN)
        if self.primary and (readout := readout_name(self.primary["readout"])) in SAMPLED_READOUTS and self.sampled_mean is None:
            raise ConfigError(f"eval.primary.readout: {readout} reads the judgments eval.sampled_mean draws; set it")
        if self.votes_curve and max(self.votes_curve) != self.votes_curve_sampling.n:
            raise ConfigError(f"eval.votes_curve: its last point ({max(self.votes_curve)} votes) must be the "
                              f"eval.votes_curve_sampling.n={self.votes_curve_sampling.n} judgments sampled per response")

    def limit_for(self, bench: str) -> int | None:
        """Items per domain/subset for `bench`: benches differ in cost (RM-Bench: 6 judgments a prompt)."""
        if not isinstance(self.limit, dict):
            return self.limit
        if bench not in self.limit:
            raise ConfigError(f"eval.limit has no entry for bench {bench!r} (it has: {', '.join(self.limit)})")
        return self.limit[bench]


@dataclass
class PolicyConfig:
    """Downstream RLHF (notebook 05): a policy trained by GRPO + LoRA with a judge as its reward, then IFEval.

    Each rewarder trains its own policy from the same base model on the same prompts with the
    same settings, so the policies differ only in who rewarded them. Rewarders: the run's judges
    ("base", "sft", "par", "par-<variant>") and "checker" (IFEval's own checker on the prompt's
    instructions: the upper reference).
    """

    rewarders: list[str] = field(default_factory=list)  # empty: no downstream stage
    source: str = "verifiable-if"  # prompts: this built source's training split (instructions appended)
    n_prompts: int | None = 16  # the seeded draw of training prompts; None: all
    max_steps: int = 4
    prompts_per_step: int = 1
    # The policy's rollouts (TRL num_generations, temperature, top_p, max_completion_length); n >= 2.
    rollouts: SamplingConfig = field(default_factory=lambda: SamplingConfig(n=4, max_new_tokens=128))
    learning_rate: float = 5e-5
    gradient_accumulation_steps: int = 1
    trainable_layers: int | None = None
    use_vllm: bool = False  # policy rollouts with vLLM (GPUs); on CPU the judge holds the one vLLM engine
    grpo: GrpoSettings = field(default_factory=GrpoSettings)  # the policies' own GRPO settings, never par's
    # The judge's k judgments of each completion (its sampling block); the reward is their mean
    # valid score, or mean expected score (readout), scaled from 1..10 to 0..1.
    judge_sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0, max_new_tokens=96))
    readout: str = "greedy"  # "greedy" (the score each judgment wrote) or "expected"
    # The hybrid reward's extra terms: minus length_penalty x (completion tokens / max_new_tokens),
    # and with format_check a completion that is empty or cut at max_new_tokens gets 0.
    length_penalty: float = 0.0
    format_check: bool = False
    # IFEval on every policy and the untrained one: greedy, this many new tokens; limit: None = all 541.
    ifeval: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0, max_new_tokens=256))
    ifeval_limit: int | None = None
    paired: list[list[str]] = field(default_factory=list)  # [policy A, policy B]: A - B on the same IFEval prompts
    # InFoBench (evaluation/infobench.py): the evaluator model answering its decomposed questions (a model name
    # or hub id; the benchmark's authors use GPT-4); None: not run. Policies answer with the ifeval block.
    infobench_evaluator: str | None = None

    def __post_init__(self) -> None:
        self.rollouts.check("policy.rollouts", min_n=2)
        self.judge_sampling.check("policy.judge_sampling")
        self.ifeval.check("policy.ifeval")


# Keys added after runs were committed (section.key: default): recorded only when set otherwise.
LATER_KEYS: dict[str, Any] = {"eval.sampled_mean": None, "par.entropy_coef": None,
                              "policy.grpo": dataclasses.asdict(GrpoSettings()),
                              "sft.gradient_checkpointing": False, "bt.gradient_checkpointing": False,
                              "model.revision": None, "sft.paper_revision": None, "sft.paper_file": None}


@dataclass
class RunConfig:
    profile: str = "smoke"
    seed: int = 0
    notebooks: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    par: ParConfig = field(default_factory=ParConfig)
    bt: BtConfig = field(default_factory=BtConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def why_off(self, stage: str) -> str | None:
        """Why this config switches library stage `stage` off, or None when it runs: notebooks, the chain, the CLI
        and the stage functions themselves ask this (`stages.enabled`), so the rule lives here once."""
        par_off = None if self.par.enabled else "par.enabled is false"
        no_rewarders = None if self.policy.rewarders else "policy.rewarders is empty"
        reasons = {
            "sft": None if self.sft.enabled else "sft.enabled is false",
            "par": par_off,
            "par-variants": par_off or (None if self.par.variants else "par.variants is empty"),
            "learning-curve": par_off or (None if self.par.learning_curve_pairs else "par.learning_curve_pairs is 0"),
            "bt": None if "bt" in self.eval.judges else "bt is not one of eval.judges",
            "policies": no_rewarders,
            "downstream": no_rewarders,
        }
        return reasons.get(stage)

    def to_dict(self) -> dict[str, Any]:
        """The config as recorded in manifests and metrics files (and hashed by `fingerprint`).

        The downstream section, left at its defaults (no policy is trained), the keys of
        LATER_KEYS at their defaults and data.sources[].subsets, left unset, stay out: runs made
        before the kit had them record the same config, so their later stages (figures) can run again.
        """
        values = dataclasses.asdict(self)
        if self.policy == PolicyConfig():
            del values["policy"]
        for key, default in LATER_KEYS.items():
            section, name = key.split(".")
            if section in values and values[section][name] == default:
                del values[section][name]
        for source in values["data"]["sources"]:
            for key in ("subsets", "revision"):  # data.sources[].subsets and .revision, unset
                if source[key] is None:
                    del source[key]
        return values

    def fingerprint(self) -> str:
        """A short hash of the resolved config: two runs with equal fingerprints ran the same settings."""
        return fingerprint_of(self.to_dict())
