"""Downstream RLHF: a policy trained with a judge as its reward, then scored on IFEval (notebook 05).

The paper's second claim is that its trained judge, used as the reward of RLHF, makes better
policies than the base judge does. Here every rewarder trains its own policy from the same base
model on the same prompts with the same GRPO settings (`policy` block of the profile), so the
policies differ only in who rewarded them:

- a run's generative judge (`base`, `sft`, `par`): each completion gets k judgments (the
  judge's pointwise prompt with the task-adaptive rubric of the `instruction` task); the reward
  is their mean valid score (or mean expected score, `policy.readout`) scaled from 1..10 to 0..1;
- `checker`: IFEval's own checker on the prompt's instruction, the upper reference a judge can
  at best match.

Rule for invalid judgments: a completion none of whose k judgments has a score gets reward 0,
the reward of the worst score, and is counted (`judge/unscored_share` in the training log). No
score is made up for it; the policy is pushed away from what the judge cannot read.

Prompts: the file stage 01 drew (pairs/policy_prompts.jsonl, `data/policy_prompts.py`): chat
questions of the verifiable source's training split with one IFEval-type instruction appended,
never IFEval's own prompts. IFEval then scores each policy and
the untrained one on its 541 prompts, greedy through the judging engine (`evaluation/ifeval.py`).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import ParConfig, RunConfig
from patarm_kit.data import ifcheck
from patarm_kit.data.policy_prompts import read_policy_prompts
from patarm_kit.data.sources.verifiable_if import TASK
from patarm_kit.judging.judge import Judge, JudgeRequest, readout_score
from patarm_kit.judging.models import adapter_card, load_model, lora_config
from patarm_kit.judging.prompts import SCORE_RANGE, render_chat
from patarm_kit.judging.registry import build_judge, parse_judge
from patarm_kit.runs.env import now
from patarm_kit.runs.run import Run
from patarm_kit.training.checkpoints import finish_training
from patarm_kit.training.grpo import make_grpo_trainer, metrics_callback, read_metrics
from patarm_kit.training.par_reward import completion_text

UNTRAINED = "untrained"  # the policy before any RLHF: the base model itself
CHECKER = "checker"
UNSCORED_REWARD = 0.0  # a completion without any scored judgment (see the module's rule)


# ---------------------------------------------------------------- rewards


def checker_reward(prompts: list[Any], completions: list[Any], instruction_id: list[str], kwargs_json: list[str],
                   prompt_text: list[str], **_: Any) -> list[float]:
    """1 when IFEval's checker passes the completion on the prompt's instruction (strict), else 0."""
    return [float(ifcheck.check(completion_text(c), [i], [json.loads(k)], p)[0].strict)
            for c, i, k, p in zip(completions, instruction_id, kwargs_json, prompt_text, strict=True)]


def scaled(score: float) -> float:
    """A judge's score on 1..10 as a reward on 0..1."""
    low, high = SCORE_RANGE
    return (score - low) / (high - low)


def judge_reward(judge: Judge, readout: str, max_new_tokens: int, length_penalty: float = 0.0,
                 format_check: bool = False) -> Callable[..., list[float]]:
    """A TRL reward function: the judge's mean score of each completion over k judgments, on 0..1.

    Hybrid terms (off by default): minus `length_penalty` x tokens / max_new_tokens, and with
    `format_check` an empty completion or one cut at the token limit gets 0.
    """

    def reward(prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], prompt_text: list[str],
               log_metric: Callable[[str, float], None] | None = None, **_: Any) -> list[float]:
        texts = [completion_text(c) for c in completions]
        requests = [JudgeRequest(f"rollout-{i}", "policy", ({"role": "user", "content": p},), text, TASK)
                    for i, (p, text) in enumerate(zip(prompt_text, texts, strict=True))]
        judgments = judge.judge(requests)
        k = len(judgments) // len(requests)
        rewards, unscored = [], 0
        for i, (text, ids) in enumerate(zip(texts, completion_ids)):
            scores = [s for j in judgments[i * k:(i + 1) * k] if (s := readout_score(j, readout)) is not None]
            unscored += not scores
            value = scaled(statistics.fmean(scores)) if scores else UNSCORED_REWARD
            value -= length_penalty * len(ids) / max_new_tokens
            if format_check and (not text.strip() or len(ids) >= max_new_tokens):
                value = 0.0
            rewards.append(value)
        if log_metric is not None:
            log_metric("judge/unscored_share", unscored / len(requests))
            log_metric("judge/reward_mean", statistics.fmean(rewards))
        return rewards

    reward.__name__ = f"judge_{readout}"  # TRL logs each reward under its function's name
    return reward


# ---------------------------------------------------------------- training


@dataclass
class PolicyResult:
    rewarder: str
    adapter: Path
    metrics: list[dict[str, Any]]
    global_step: int
    n_prompts: int


def grpo_block(config: RunConfig) -> RunConfig:
    """The config the GRPO trainer reads (its `par` block), made from the policy block alone: its
    own GRPO settings (`policy.grpo`), steps, rate and rollouts; nothing of PAR's block leaks in."""
    policy = config.policy
    par = ParConfig(
        **dataclasses.asdict(policy.grpo), rollouts=policy.rollouts, max_steps=policy.max_steps,
        learning_rate=policy.learning_rate, gradient_accumulation_steps=policy.gradient_accumulation_steps,
        trainable_layers=policy.trainable_layers, use_vllm=policy.use_vllm, save_steps=policy.max_steps, n_pairs=None,
    )
    return dataclasses.replace(config, par=par)


def reward_function(config: RunConfig, run: Run, rewarder: str) -> Callable[..., list[float]]:
    """The reward a rewarder gives: the checker, or a run's judge through the shared judging engine."""
    if rewarder == CHECKER:
        return checker_reward

    policy = config.policy
    judge = build_judge(parse_judge(rewarder, run.layout), config, policy.judge_sampling)
    return judge_reward(judge, policy.readout, policy.rollouts.max_new_tokens, policy.length_penalty, policy.format_check)


def train_policy(config: RunConfig, run: Run, rewarder: str) -> PolicyResult:
    """GRPO + LoRA on the base model, rewarded by `rewarder`; the adapter goes to <run>/policy/<rewarder>/."""
    from datasets import Dataset

    layout = run.layout
    adapter_dir, metrics_path = layout.policy_adapter(rewarder), layout.policy_metrics(rewarder)
    prompts = read_policy_prompts(layout.policy_prompts)
    model, tokenizer = load_model(config.model, trainable=True)
    rows = [p.to_row(render_chat(tokenizer, [{"role": "user", "content": p.prompt}], config.model.enable_thinking))
            for p in prompts]
    trainer = make_grpo_trainer(
        grpo_block(config), model, tokenizer, Dataset.from_list(rows),
        reward_function(config, run, rewarder), layout.policy_dir(rewarder) / "checkpoints",
        peft_config=lora_config(config.lora), callbacks=[metrics_callback(metrics_path, step_key="reward")],
        rows_per_step=config.policy.prompts_per_step,
    )
    record = {"config_fingerprint": config.fingerprint(), "rewarder": rewarder, "n_prompts": len(prompts),
              "num_processes": trainer.accelerator.num_processes, "grpo_args": json.loads(trainer.args.to_json_string()),
              "started": now()}
    trainer.train()
    metrics = finish_training(trainer, run, adapter_dir, metrics_path, f"policy-{rewarder}", record,
                              lambda done: policy_card(config, rewarder, done))
    return PolicyResult(rewarder, adapter_dir, metrics, trainer.state.global_step, len(prompts))


def recorded_policy(run: Run, rewarder: str) -> PolicyResult:
    """A finished policy as `train_policy` returned it, read back from the policies stage's record and its metrics."""
    facts = run.manifest()["stages"]["policies"]["facts"][rewarder]
    return PolicyResult(rewarder, run.layout.policy_adapter(rewarder), read_metrics(run.layout.policy_metrics(rewarder)),
                        facts["steps"], facts["prompts"])


def policy_card(config: RunConfig, rewarder: str, record: dict[str, Any]) -> str:
    """A policy adapter's card: its rewarder, prompts and steps."""
    return adapter_card(
        f"Policy adapter rewarded by {rewarder} (GRPO, LoRA)",
        f"LoRA adapter for `{config.model.name}`, made by `patarm_kit.training.policies` with TRL's GRPOTrainer: "
        "the downstream RLHF step, where a judge (or the instruction checker) rewards the policy.",
        [f"rewarder: `{rewarder}`; {record['n_prompts']} prompts, {record['global_step']} steps",
         f"last step: reward {record['last_metrics'].get('reward')}", f"finished {record['finished']}"],
        "Evaluated by `patarm-kit downstream` (IFEval with the official checker, InFoBench).")
