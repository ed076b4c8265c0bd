"""The score-reading probe: can PAR's reward teach the judge to score by what it has just said?

In a GRPO step on whole judgments (criteria, evaluation, score: ~65 tokens each) the reward's
signal is spread over every sampled token. This probe keeps only the score. Each side of a pair
is written as the `facts` warm-up writes it (every stated verdict right) up to `<score>`; the
judge samples `par.rollouts.n` scores from its digit distribution there; each sample earns PAR's
reward against the other side's samples (`par.par_rewards`, the trainer's own function); and a
policy-gradient step with group-mean advantages (TRL's `scale_rewards: none`) updates the LoRA
adapter PAR would start from (the run's warm-up, or a fresh one), `par.pairs_per_step` pairs per
step. Dev pairs are read teacher-forced: the
expected score of each side, and whether chosen's is the higher.

It answers in minutes what a PAR run answers in an hour: can the adapter make the score depend
on the verdicts at all? On SmolLM2 it showed that LoRA in the top 8 of 30 layers cannot, at
PAR's learning rate, where LoRA in every layer can (README, "PAR on CPU, second attempt").
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import RunConfig
from patarm_kit.data.pairs import PreferencePair
from patarm_kit.judging.judge import prompt_judge, score_digit_ids
from patarm_kit.judging.models import load_model, lora_config
from patarm_kit.runs.notebooks import progress
from patarm_kit.training.grpo import train_top_layers_only
from patarm_kit.training.par_reward import par_rewards
from patarm_kit.training.sft import pair_examples

SCORE_TAG = "<score>"
# "10" is written "1" + "0": the probe reads the first digit of 1..9 only (renormalised over them).
PROBE_DIGITS = tuple(range(1, 10))


@dataclass(frozen=True)
class ProbeSide:
    """One side of a pair as the judge sees it at the score: prompt plus the judgment up to `<score>`."""

    pair_id: str
    side: str
    text: str


def verdict_prefixes(config: RunConfig, pairs: Sequence[PreferencePair], tokenizer: Any) -> list[ProbeSide]:
    """Both sides of each pair (chosen first), written by the `facts` warm-up up to the score tag."""
    examples = pair_examples(pairs, prompt_judge(config, tokenizer), "facts", config.seed)
    return [ProbeSide(e.pair_id, e.side, e.prompt + e.completion[: e.completion.index(SCORE_TAG) + len(SCORE_TAG)])
            for e in examples]


def digit_ids(tokenizer: Any) -> list[int]:
    """Token ids of the digits 1..9 (`judge.score_digit_ids`), each of which must be one token."""
    digits = score_digit_ids(tokenizer)
    if digits is None:
        raise ValueError(f"{tokenizer.name_or_path} does not write each digit as one token: the score probe needs that")
    return [digits[d] for d in PROBE_DIGITS]


def digit_log_probs(model: Any, tokenizer: Any, text: str, digits: Sequence[int]) -> Any:
    """log P(first score digit = d | text) for d = 1..9, renormalised over the nine digits."""
    import torch

    encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    logits = model(**encoded).logits[0, -1].float()
    return torch.log_softmax(torch.log_softmax(logits, -1)[list(digits)], -1)


def group_advantages(chosen: Sequence[int], rejected: Sequence[int]) -> tuple[list[float], list[float]]:
    """PAR's binary rewards of sampled scores minus their side's mean (GRPO, rewards not std-scaled)."""
    chosen_rewards, rejected_rewards = par_rewards(list(map(float, chosen)), list(map(float, rejected)), mode="binary")
    return _centred(chosen_rewards), _centred(rejected_rewards)


def _centred(rewards: Sequence[float]) -> list[float]:
    """Each reward minus the mean of its group: GRPO's advantage without std scaling."""
    mean = sum(rewards) / len(rewards)
    return [r - mean for r in rewards]


def read_dev(model: Any, tokenizer: Any, sides: Sequence[ProbeSide], digits: Sequence[int]) -> dict[str, float]:
    """Teacher-forced dev readout: share of pairs whose chosen side has the higher expected score, and the mean gap."""
    import torch

    weights = torch.tensor(PROBE_DIGITS, dtype=torch.float32)
    expected: dict[tuple[str, str], float] = {}
    with torch.no_grad():
        for side in sides:
            expected[(side.pair_id, side.side)] = float((digit_log_probs(model, tokenizer, side.text, digits).exp() * weights).sum())
    pair_ids = list(dict.fromkeys(side.pair_id for side in sides))
    gaps = [expected[(p, "chosen")] - expected[(p, "rejected")] for p in pair_ids]
    return {"accuracy": sum(g > 0 for g in gaps) / len(gaps), "score_gap": sum(gaps) / len(gaps), "pairs": len(gaps)}


def probe_curve(config: RunConfig, train_pairs: Sequence[PreferencePair], dev_pairs: Sequence[PreferencePair],
                trainable_layers: int | None, steps: int, learning_rate: float, read_every: int,
                start_adapter: Path | None = None) -> list[dict[str, float]]:
    """Train `start_adapter` (None: a fresh LoRA adapter) on the score alone with PAR's reward;
    the dev readout every `read_every` steps."""
    import torch
    from peft import get_peft_model

    model, tokenizer = load_model(config.model, adapter=start_adapter, trainable=True)
    train_sides = verdict_prefixes(config, train_pairs, tokenizer)
    dev_sides = verdict_prefixes(config, dev_pairs, tokenizer)
    digits = digit_ids(tokenizer)
    if start_adapter is None:
        model = get_peft_model(model, lora_config(config.lora))
    if trainable_layers is not None:
        train_top_layers_only(model, trainable_layers)
    model.eval()  # no dropout, as in PAR's GRPO (train.grpo_args)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    order, sampler = random.Random(config.seed), torch.Generator().manual_seed(config.seed)
    n, per_step = config.par.rollouts.n, config.par.pairs_per_step
    curve = [{"step": 0, **read_dev(model, tokenizer, dev_sides, digits)}]
    reach = "every layer" if trainable_layers is None else f"top {trainable_layers} layers"
    for step in progress(range(1, steps + 1), desc=f"score probe, LoRA in the {reach}", unit="step"):
        loss = torch.zeros(())
        for index in order.sample(range(len(train_sides) // 2), per_step):
            chosen, rejected = train_sides[2 * index], train_sides[2 * index + 1]
            log_probs = [digit_log_probs(model, tokenizer, side.text, digits) for side in (chosen, rejected)]
            samples = [torch.multinomial(lp.exp().detach(), n, replacement=True, generator=sampler) for lp in log_probs]
            advantages = group_advantages(*[(s + 1).tolist() for s in samples])
            for lp, sample, advantage in zip(log_probs, samples, advantages):
                loss = loss - (torch.tensor(advantage) * lp[sample]).sum() / (2 * n * per_step)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % read_every == 0 or step == steps:
            curve.append({"step": step, **read_dev(model, tokenizer, dev_sides, digits)})
    return curve
