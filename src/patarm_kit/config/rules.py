"""The allowed values of a config: minimums, choices and the rules some keys follow.

Every rule lives here once; `config.build` applies them to each key as a profile is read, so
a wrong value names its key before anything runs.
"""

from __future__ import annotations

import re
from typing import Any

SPLITS = ("train", "dev", "test")


class ConfigError(ValueError):
    """A profile or an override is wrong; the message names the key."""


# ---------------------------------------------------------------- rules a type cannot say, checked where values are read

# Counts below their minimum make no sense (0 pairs would score a metric from no judgments).
# None, where a key allows it, keeps its meaning ("all"). Lists and mappings of counts
# (eval.limit per bench, eval.votes_curve) are checked item by item. The sampling blocks
# (n, max_new_tokens, ...) check themselves: SamplingConfig.check.
MINIMUM: dict[str, int] = {
    "seed": 0,
    "data.sources.limit": 1,
    "model.torch_threads": 1,
    "judge.batch_size": 1, "judge.max_prompt_tokens": 1, "judge.max_response_tokens": 1, "judge.preview_pairs": 1,
    "judge.kv_cache_gib": 1, "judge.max_model_len": 1,
    "lora.r": 1, "lora.alpha": 1,
    "sft.n_pairs": 1, "sft.max_steps": 1, "sft.warmup_steps": 0, "sft.batch_size": 1, "sft.max_length": 1,
    "sft.n_check_pairs": 1,
    "par.n_pairs": 1, "par.max_steps": 1, "par.pairs_per_step": 1, "par.gradient_accumulation_steps": 1,
    "par.trainable_layers": 1,
    "par.num_iterations": 1, "par.save_steps": 1, "par.logging_steps": 1,
    "bt.n_pairs": 1, "bt.max_steps": 1, "bt.batch_size": 1, "bt.max_length": 1,
    "eval.limit": 1, "eval.n_boot": 1, "eval.votes_curve": 1, "eval.votes_curve_limit": 1,
    "policy.n_prompts": 1, "policy.max_steps": 1, "policy.prompts_per_step": 1, "policy.gradient_accumulation_steps": 1,
    "policy.trainable_layers": 1, "policy.ifeval_limit": 1,
}

# What an equal or invalid comparison is worth, by tie rule (`eval.ties`): "zero" is the strict
# rule of scalar RMs (RewardBench's run_rm, RM-Bench); "half" is the generative runners'
# "effectively a tie". Scoring (bench.base.tie_value) reads the value from here.
TIE_VALUES: dict[str, float] = {"half": 0.5, "zero": 0.0}
# What a pointwise judge's score of a response is read as (judge.readout_score): "greedy", the number
# its judgment wrote (eval.sampling: one greedy judgment); "expected", that judgment's expected score,
# read after it (judging/judge.py); "sampled-mean", the mean number written by k judgments sampled at the
# rollout temperature (eval.sampled_mean): the judgment distribution PAR trains; "sampled-expected",
# the mean expected score of the same k judgments: the same quantity as sampled-mean (the mean score
# of that distribution) without the noise of drawing the score token itself (Rao-Blackwell).
READOUTS = ("greedy", "expected", "sampled-mean", "sampled-expected")
SAMPLED_READOUTS = ("sampled-mean", "sampled-expected")  # the readouts of eval.sampled_mean's draws
SAMPLED_MEAN_MIN = 4  # k: fewer samples than this would leave the mean as coarse as one judgment
# Runs and profiles made before sampled-mean named the greedy readout "sampled": read as today's name.
READOUT_ALIASES = {"sampled": "greedy"}


def readout_name(name: str) -> str:
    """A readout by today's name (an older run's or profile's "sampled" is "greedy"); unknown names are refused.

    Configs keep the name as written, so an older run's config keeps its fingerprint; readers ask here.
    """
    name = READOUT_ALIASES.get(name, name)
    if name not in READOUTS:
        raise ConfigError(f"unknown readout {name!r}; expected one of {', '.join(READOUTS)}")
    return name


# Keys that name one of a few settings: a typo is refused before any model runs.
CHOICES: dict[str, tuple[str, ...]] = {
    "judge.engine": ("vllm", "hf"),
    "judge.voting": ("mean", "majority"),
    "sft.targets": ("facts", "labels", "format", "paper"),
    "par.mode": ("binary", "graded", "format"),
    "par.scale_rewards": ("group", "batch", "none"),
    # TRL's loss formulations that need no setting the kit does not expose (luspo and vespo need
    # importance_sampling_level): docs of trl.GRPOConfig.loss_type
    "par.loss_type": ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo"),
    "par.vllm_mode": ("colocate", "server"),
    "eval.ties": tuple(TIE_VALUES),
    "policy.readout": ("greedy", "expected", *READOUT_ALIASES),  # a policy's reward reads its judge's own judgments
}


def _at_least(value: Any, minimum: int, key: str) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _at_least(item, minimum, f"{key}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _at_least(item, minimum, f"{key}[{index}]")
    elif value is not None and value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")


def _split_fractions(fractions: dict[str, float], key: str) -> None:
    """Shares of train/dev/test: none negative, not all zero (a split is drawn in proportion)."""
    for name, share in fractions.items():
        if name not in SPLITS:
            raise ConfigError(f"{key}.{name}: unknown split (splits: {', '.join(SPLITS)})")
        if share < 0:
            raise ConfigError(f"{key}.{name}: must be at least 0, got {share}")
    if sum(fractions.values()) <= 0:
        raise ConfigError(f"{key}: the fractions must add up to more than 0, got {fractions}")


def _judge_pairs(pairs: list[list[str]], key: str) -> None:
    for index, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ConfigError(f"{key}[{index}]: expected two judges [A, B], got {pair}")


def _primary(primary: dict[str, str] | None, key: str) -> None:
    if primary is None:
        return
    if sorted(primary) != ["a", "b", "bench", "readout"]:
        raise ConfigError(f"{key}: expected the keys a, b, bench and readout, got {', '.join(sorted(primary))}")
    try:
        readout_name(primary["readout"])
    except ConfigError as err:
        raise ConfigError(f"{key}.readout: {err}") from None


def _rewarders(rewarders: list[str], key: str) -> None:
    """A policy's rewarder is the instruction checker or one of the run's own generative judges."""
    for index, name in enumerate(rewarders):
        if not re.fullmatch(r"checker|base|sft|par(-[a-z0-9][a-z0-9-]*)?", name):
            raise ConfigError(f"{key}[{index}]: expected checker, base, sft, par or par-<variant>, got {name!r}")


def _hub_revision(revision: str | None, key: str) -> None:
    """A hub revision is a commit: a branch or a tag can move between a run's stages."""
    if revision is not None and not re.fullmatch(r"[0-9a-f]{40}", revision):
        raise ConfigError(f"{key}: expected a hub commit (40 lower-case hex digits), got {revision!r}")
