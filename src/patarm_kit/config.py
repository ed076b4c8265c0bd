"""One typed configuration for a run: a YAML profile plus overrides.

Profiles live in `configs/<name>.yaml`. A profile may start with `extends: <other>` to
inherit another profile and change only what differs. Notebook parameters and CLI flags
override single keys with dotted names (`judge.temperature=0.7`). Unknown keys and wrong
types are errors that name the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILE_DIR = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A profile or an override is wrong; the message names the key."""


@dataclass
class SourceConfig:
    """One data source: a built-in name, a local file, or a hub dataset id."""

    name: str
    role: str = "train"  # "train": split into train/dev/test; "bench": evaluation only
    limit: int | None = None
    bad_rows: str = "error"  # "error" stops the load; "skip" drops and reports the row


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


@dataclass
class JudgeConfig:
    rubric_file: str | None = None
    n_samples: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 160
    batch_size: int = 16
    max_prompt_tokens: int = 384
    max_response_tokens: int = 256
    backend: str = "hf"  # "hf" (transformers generate) or "vllm"
    voting: str = "mean"  # "mean" or "majority"
    preview_pairs: int = 4  # notebook 02: training pairs the base judge scores before any training


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class SftConfig:
    enabled: bool = True
    targets: str = "format"  # "format", "labels" or "paper"
    n_pairs: int | None = 64  # training pairs (2 examples each), or paper rows; None: all
    max_steps: int = 40
    learning_rate: float = 2e-4
    warmup_steps: int = 0
    batch_size: int = 8
    max_length: int = 1024  # longer examples are dropped and counted, never cut
    n_check_pairs: int = 16  # held-out (dev) pairs for the warm-up checks


@dataclass
class ParConfig:
    """PAR training (GRPO). Every setting whose TRL default has moved between versions is set here."""

    enabled: bool = True
    mode: str = "binary"  # "binary" or "graded"
    format_weight: float = 0.1
    n_pairs: int | None = 16  # None: every training pair
    max_steps: int = 4
    pairs_per_step: int = 2  # both sides of each pair are judged in the same step
    num_generations: int = 4  # rollouts per (pair, side): one GRPO group
    gradient_accumulation_steps: int = 1  # splits a step's completions into micro-batches (memory)
    learning_rate: float = 1e-5  # TRL's advice for LoRA (1e-6 is its full fine-tuning default)
    lr_scheduler_type: str = "linear"
    beta: float = 0.0  # KL weight; 0 needs no reference model
    loss_type: str = "dapo"
    scale_rewards: str = "group"  # "group", "batch" or "none"
    epsilon: float = 0.2
    num_iterations: int = 1
    mask_truncated_completions: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 160
    bf16: bool = False  # mixed precision on GPUs
    gradient_checkpointing: bool = False
    save_steps: int = 2
    logging_steps: int = 1
    report_to: list[str] = field(default_factory=list)  # e.g. ["tensorboard"] (pip install tensorboard)
    use_vllm: bool = False  # GPU rollouts with vLLM
    vllm_mode: str = "colocate"  # "colocate" (inside the trainer) or "server" (trl vllm-serve)
    vllm_gpu_memory_utilization: float = 0.3


@dataclass
class BtConfig:
    """The scalar Bradley-Terry baseline (bt.py), trained on the judge's training pairs."""

    n_pairs: int | None = 64  # the seeded draw the judge's stages make; None: every training pair
    max_steps: int = 16
    learning_rate: float = 2e-4
    batch_size: int = 4  # pairs per step; each step reads twice as many sequences
    max_length: int = 512  # training drops longer pairs (counted); scoring keeps the first tokens


@dataclass
class EvalConfig:
    judges: list[str] = field(default_factory=lambda: ["length", "random", "base"])
    benches: list[str] = field(default_factory=lambda: ["rmbench", "rewardbench", "pairs:hh-rlhf"])
    limit: int | dict[str, int | None] | None = 8  # items per domain/subset; a mapping sets it per bench
    votes: int = 1
    ties: str = "half"
    n_boot: int = 1000
    temperature: float = 0.0  # one vote: greedy decoding, as RewardBench's generative runner
    vote_temperature: float = 1.0  # several votes need sampling
    max_new_tokens: int = 128
    votes_curve: list[int] = field(default_factory=list)  # accuracy vs number of votes (notebook 04)
    votes_curve_judge: str = "par"
    votes_curve_bench: str = "pairs:hh-rlhf"
    votes_curve_limit: int | None = None  # items for the curve; None: the bench's eval.limit
    paired: list[list[str]] = field(default_factory=list)  # [judge A, judge B]: A - B on the same items

    def limit_for(self, bench: str) -> int | None:
        """Items per domain/subset for `bench`: benches differ in cost (RM-Bench: 6 judgments a prompt)."""
        if not isinstance(self.limit, dict):
            return self.limit
        if bench not in self.limit:
            raise ConfigError(f"eval.limit has no entry for bench {bench!r} (it has: {', '.join(self.limit)})")
        return self.limit[bench]


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A short hash of the resolved config: two runs with equal fingerprints ran the same settings."""
        return fingerprint_of(self.to_dict())


def fingerprint_of(values: dict[str, Any]) -> str:
    """The fingerprint of a config as a plain dict (e.g. as recorded in a manifest)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a type annotation, building nested dataclasses; name `key` on error."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, str) and annotation is SourceConfig:
            value = {"name": value}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {annotation.__name__}, got {value!r}")
        return _build(annotation, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(annotation)
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, value_type = typing.get_args(annotation)
        return {k: _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(sorted(known))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_profile(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
        raise ConfigError(f"profile {name_or_path!r} not found ({path}); available: {available}")
    if str(path) in seen:
        raise ConfigError(f"profile {path} extends itself through {' -> '.join(seen)}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a profile must be a mapping of keys to values")
    parent = values.pop("extends", None)
    values.setdefault("profile", path.stem)
    if parent:
        return _merge(_read_profile(parent, (*seen, str(path))), values)
    return values


def _set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    node = values
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    node[leaf] = value


def load_config(profile: str = "smoke", overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a profile (name in configs/ or a YAML path) and apply dotted-key overrides.

    Override values given as strings (from the command line) are parsed as YAML scalars,
    so `judge.temperature=0.7` gives a float and `eval.limit=null` gives None.
    """
    values = _read_profile(profile)
    for dotted, value in (overrides or {}).items():
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else value
        _set_dotted(values, dotted, value)
    return _build(RunConfig, values, "")


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Turn CLI `key=value` strings into a dict for `load_config`."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} must look like section.key=value")
        overrides[key.strip()] = value
    return overrides
