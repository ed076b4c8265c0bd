"""PAR training: TRL's GRPOTrainer with LoRA, one (pair, side) judge prompt per dataset row.

How a step is laid out. The dataset holds the two rows of each pair next to each other
(chosen, then rejected), pairs in a seeded random order. TRL's `RepeatSampler` with
`shuffle_dataset=False` takes `2 * pairs_per_step` consecutive rows per step and repeats each
row `num_generations` times, so one step always judges both sides of `pairs_per_step` whole
pairs, and a GRPO group is the n rollouts of one (pair, side).

Many processes. TRL hands each process a consecutive slice of the step's completions and
calls the reward function on that slice only; the slice border can cut a pair in two (for
example one pair per step on two GPUs: chosen on GPU 0, rejected on GPU 1). Rather than rely
on batch sizes that keep pairs whole, the reward function gathers (pair_id, side, score) from
every process, computes PAR on the whole step with `par.rewards_for_batch`, and returns its
own slice. The gather is a no-op on one process, so both cases run the same code.

Prompts are built by `Judge.prompt_text`, the exact chat-formatted text (with the same
truncation) the judge sees at evaluation, and passed to TRL as plain text.

Crash safety. A run killed at any moment resumes (`resume=True`) from what was written whole:
- a checkpoint counts once its marker file (`checkpoint_complete.json`, written after every
  other file of the checkpoint, listing them with their sizes) is there; resume takes the
  newest complete checkpoint and deletes checkpoint folders without a marker;
- the final adapter is saved into a staging folder and renamed into place when complete;
- `par/metrics.jsonl` is append-only and a line counts once its newline is written: a last
  line without one (the write was cut) is dropped with a warning and cut off the file on
  resume; a damaged line before the last one is an error naming the file and the line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patarm_kit.config.rules import ConfigError
from patarm_kit.config.schema import RunConfig
from patarm_kit.data.pairs import PreferencePair, read_pairs
from patarm_kit.judging.judge import Judge, prompt_judge, requests_for_pairs
from patarm_kit.judging.models import adapter_card, load_model, lora_config
from patarm_kit.judging.prompts import evaluation_text, parse_judgment
from patarm_kit.runs.env import now, package_versions
from patarm_kit.runs.files import read_json, sha256_of
from patarm_kit.runs.run import Run
from patarm_kit.training.checkpoints import (
    checkpoint_folders,
    checkpoint_marker,
    finish_training,
    latest_checkpoint,
    remove_partial_saves,
)
from patarm_kit.training.grpo import (
    METRIC_PREFIX,
    REWARD_KEY,
    _gather_from_processes,
    check_plain_tokenization,
    keep_metrics_up_to,
    lora_dropout_in_use,
    make_grpo_trainer,
    metrics_callback,
    read_metrics,
    rollout_settings,
)
from patarm_kit.training.par_reward import completion_text, pair_accuracy, rewards_for_batch

_WORD = re.compile(r"\w+")


@dataclass
class ParResult:
    """What a PAR training run left behind, for notebook 03."""

    adapter: Path
    checkpoints: Path
    metrics_path: Path
    metrics: list[dict[str, Any]]
    global_step: int
    n_pairs: int
    resumed_from: Path | None = None
    start_adapter: Path | None = None


# ---------------------------------------------------------------- data


def training_pairs(config: RunConfig, path: Path) -> list[PreferencePair]:
    """A seeded sample of `par.n_pairs` pairs from `path`, cut to whole steps of `pairs_per_step`.

    TRL drops a step that is not full, so a remainder would never be trained on anyway.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run notebook 01 (data pairing) for this run first")
    pairs = read_pairs(path)
    wanted = len(pairs) if config.par.n_pairs is None else min(config.par.n_pairs, len(pairs))
    sample = random.Random(config.seed).sample(pairs, wanted)
    if config.par.shuffle_labels:
        sample = shuffled_labels(sample, config.seed)
    whole_steps = len(sample) // config.par.pairs_per_step * config.par.pairs_per_step
    if whole_steps == 0:
        raise ConfigError(f"par.pairs_per_step={config.par.pairs_per_step} but only {len(sample)} training pairs")
    return sample[:whole_steps]


def shuffled_labels(pairs: Sequence[PreferencePair], seed: int) -> list[PreferencePair]:
    """The control's pairs: chosen and rejected swapped in a seeded half, so a label says nothing."""
    rng = random.Random(f"shuffle-labels/{seed}")
    swap = set(rng.sample(range(len(pairs)), len(pairs) // 2))
    return [dataclasses.replace(p, chosen=p.rejected, rejected=p.chosen) if i in swap else p for i, p in enumerate(pairs)]


def prompt_rows(pairs: Sequence[PreferencePair], judge: Judge) -> list[dict[str, str]]:
    """One row per (pair, side), the two sides of a pair adjacent: prompt text, pair_id, side."""
    rows = []
    for request in requests_for_pairs(pairs):
        text, _ = judge.prompt_text(request)
        rows.append({"prompt": text, "pair_id": request.pair_id, "side": request.side})
    return rows


def evaluation_first_word(text: str) -> str | None:
    """The first word of a judgment's <evaluation> section, lower-cased; None without a (complete, non-empty) one.

    SFT's evaluations open with one word per score band ("Weak", "Partly", "Handles"), so the
    spread of first words shows whether rollouts still differ in what they say or collapse onto
    one band. The section is the parser's (`prompts.evaluation_text`: outside a <think> block).
    """
    section = evaluation_text(text)
    word = _WORD.search(section) if section else None
    return word.group(0).lower() if word else None


def score_entropy(scores: Sequence[int | None]) -> float | None:
    """Shannon entropy (bits) of the valid scores' distribution over 1..10; None without one.

    0 when every rollout gives the same score, log2(10) = 3.32 when all ten are equally common.
    """
    counts = Counter(s for s in scores if s is not None)
    total = sum(counts.values())
    if not total:
        return None
    return -sum(n / total * math.log2(n / total) for n in counts.values()) + 0.0  # + 0.0: no -0.0


def rollout_metrics(
    pair_ids: Sequence[str], sides: Sequence[str], scores: Sequence[int | None],
    rewards: Sequence[float], lengths: Sequence[int], first_words: Sequence[str | None],
) -> dict[str, float | None]:
    """What one step's rollouts say about the judge; a group is the rollouts of one (pair, side).

    A tie (equal mean scores, or a side without any valid score) gives PAR's binary reward
    nothing to separate the sides by; falling score entropy and a growing top band share are
    the judge collapsing onto one score.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for index, key in enumerate(zip(pair_ids, sides)):
        groups.setdefault(key, []).append(index)
    group_stds = [statistics.pstdev([rewards[i] for i in members]) for members in groups.values()]
    accuracies = [
        pair_accuracy([scores[i] for i in groups.get((pid, "chosen"), [])],
                      [scores[i] for i in groups.get((pid, "rejected"), [])])
        for pid in dict.fromkeys(pair_ids)
    ]
    scored = [a for a in accuracies if a is not None]
    bands = Counter(word for word in first_words if word is not None)
    return {
        "reward_mean": statistics.fmean(rewards),
        "pair_accuracy": statistics.fmean(scored) if scored else None,  # pairs with a valid score on both sides
        "parse_rate": sum(s is not None for s in scores) / len(scores),
        "completion_length_mean": statistics.fmean(lengths),
        "group_reward_std_mean": statistics.fmean(group_stds),
        "zero_std_group_share": sum(std == 0 for std in group_stds) / len(group_stds),
        "tie_rate": sum(a is None or a == 0.5 for a in accuracies) / len(accuracies),  # 0.5: equal means
        "score_entropy": score_entropy(scores),
        # judgments with an evaluation section; TRL's log_metric takes floats only, so not the whole counter
        "band_top_share": bands.most_common(1)[0][1] / bands.total() if bands else None,
        "band_count": float(len(bands)),
    }


def make_gathered_par_reward(mode: str, format_weight: float) -> Callable[..., list[float]]:
    """A TRL reward function that computes PAR over the whole step, across processes.

    Each process parses its own completions, all processes exchange (pair_id, side, score,
    length, evaluation's first word), each computes the same rewards and metrics for the whole
    step and returns its slice. The metrics go to TRL's `log_metric`, so they appear in every log line.
    """

    def par_reward(
        prompts: list[Any], completions: list[Any], completion_ids: list[list[int]],
        pair_id: list[str], side: list[str], log_metric: Callable[[str, float], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        texts = [completion_text(c) for c in completions]
        local = [
            (pid, s, parse_judgment(text).score, len(ids), evaluation_first_word(text))
            for pid, s, text, ids in zip(pair_id, side, texts, completion_ids, strict=True)
        ]
        parts, rank = _gather_from_processes(local)
        pair_ids, sides, scores, lengths, first_words = zip(*(row for part in parts for row in part))
        rewards = rewards_for_batch(pair_ids, sides, scores, mode, format_weight)
        if log_metric is not None:
            for name, value in rollout_metrics(pair_ids, sides, scores, rewards, lengths, first_words).items():
                if value is not None:
                    log_metric(METRIC_PREFIX + name, value)
        start = sum(len(part) for part in parts[:rank])
        return rewards[start:start + len(local)]

    par_reward.__name__ = f"par_{mode}"  # TRL logs each reward under its function's name
    return par_reward


def build_trainer(
    config: RunConfig, pairs: Sequence[PreferencePair], output_dir: Path,
    start_adapter: Path | None = None, callbacks: Sequence[Any] = (),
) -> Any:
    """A GRPOTrainer over the judge prompts of `pairs`, LoRA on the base model or on `start_adapter`."""
    from datasets import Dataset

    model, tokenizer = load_model(config.model, adapter=start_adapter, trainable=True)
    rows = prompt_rows(pairs, prompt_judge(config, tokenizer))
    check_plain_tokenization(tokenizer, rows[0]["prompt"])
    return make_grpo_trainer(
        config, model, tokenizer, Dataset.from_list(rows), make_gathered_par_reward(config.par.mode, config.par.format_weight),
        output_dir, peft_config=None if start_adapter else lora_config(config.lora),  # a loaded adapter is trained as is
        callbacks=callbacks,
    )


def par_adapter_card(config: RunConfig, record: dict[str, Any]) -> str:
    """The PAR adapter's card: what it was trained from, on what, and how it went."""
    last, par, versions = record["last_metrics"], config.par, package_versions()
    facts = [
        f"starting adapter: `{record['start_adapter'] or 'none (fresh LoRA)'}`",
        f"data: {record['n_pairs']} pairs from `{record['data']}`",
        f"profile: `{config.profile}` (config fingerprint `{record['config_fingerprint']}`)",
        f"PAR: {par.mode}, format weight {par.format_weight}; {record['global_step']} steps x "
        f"{par.pairs_per_step} pairs x 2 sides x {par.rollouts.n} rollouts, lr {par.learning_rate}",
        f"last step: reward {last.get(REWARD_KEY)}, pair accuracy {last.get(METRIC_PREFIX + 'pair_accuracy')}, "
        f"parse rate {last.get(METRIC_PREFIX + 'parse_rate')}, {last.get('seconds_per_step')} s/step",
        f"finished {record['finished']}; trl {versions['trl']}, peft {versions['peft']}, torch {versions['torch']}",
    ]
    return adapter_card("PaTaRM judge adapter (PAR reward, GRPO, LoRA)",
                        f"LoRA adapter for `{config.model.name}`, made by `patarm_kit.training.par` with TRL's GRPOTrainer.",
                        facts, "Load: `patarm_kit.judging.models.load_model(config.model, adapter=<this folder>)`. "
                        "Per-step metrics: `../metrics.jsonl`; settings: the run's manifest.json, `training.par`.")


def recorded_par(run: Run, judge: str = "par") -> ParResult:
    """A finished PAR training as `train_par` returned it, read back from the manifest and its metrics file."""
    layout, record = run.layout.for_par(judge), run.manifest()["training"][judge]
    optional = (lambda path: Path(path) if path else None)
    return ParResult(layout.par_adapter, layout.par_checkpoints, layout.par_metrics, read_metrics(layout.par_metrics),
                     record["global_step"], record["n_pairs"], optional(record["resumed_from"]),
                     optional(record["start_adapter"]))


def train_par(config: RunConfig, run: Run, start_adapter: Path | None = None, resume: bool = False,
              judge: str = "par") -> ParResult:
    """Train the judge with PAR: checkpoints every `par.save_steps`, final adapter in <run>/par/adapter.

    `start_adapter` (the SFT adapter) is loaded trainable and trained further; without it a
    fresh LoRA adapter is added. `resume` continues from the latest checkpoint in
    <run>/par/checkpoints (from step 0 when there is none yet). Under `accelerate launch`
    every process calls this; only the main process writes the manifest, metrics and card.
    """
    layout = run.layout.for_par(judge)  # "par", or a variant's "par-<name>"
    checkpoints, adapter_dir, metrics_path = layout.par_checkpoints, layout.par_adapter, layout.par_metrics
    checkpoint = latest_checkpoint(checkpoints)
    if not resume and (checkpoint_folders(checkpoints) or adapter_dir.exists() or metrics_path.exists()):
        raise FileExistsError(f"{layout.par_dir} already holds PAR training; pass resume=True (--resume) to continue it")
    if checkpoint is not None:
        recorded = run.manifest().get("training", {}).get(judge, {}).get("config_fingerprint")
        if recorded != config.fingerprint():
            raise ConfigError(f"{checkpoint} was made with another config; resume with the same profile and --set")
    data_file = layout.pairs("train")
    pairs = training_pairs(config, data_file)
    trainer = build_trainer(config, pairs, checkpoints, start_adapter, [metrics_callback(metrics_path), checkpoint_marker()])
    record = {
        "config_fingerprint": config.fingerprint(),
        "start_adapter": str(start_adapter) if start_adapter else None,
        "data": str(data_file),
        "data_sha256": sha256_of(data_file),
        "n_pairs": len(pairs),
        "par_settings": {k: v for k, v in dataclasses.asdict(config.par).items() if k != "variants"},
        "num_processes": trainer.accelerator.num_processes,
        "rollouts": rollout_settings(config, trainer.model.device.type),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "lora_dropout": lora_dropout_in_use(trainer.model),  # during GRPO (config.lora.dropout is SFT's)
        "grpo_args": json.loads(trainer.args.to_json_string()),  # every TRL setting, defaults included
        "resumed_from": str(checkpoint) if checkpoint else None,
        "started": now(),
    }
    main_process = trainer.accelerator.is_main_process
    if main_process:
        for path in remove_partial_saves(layout):
            print(f"[par] removed {layout.relative(path)}: left half-written by a stopped run")
        resumed_step = read_json(checkpoint / "trainer_state.json")["global_step"] if checkpoint else 0
        keep_metrics_up_to(metrics_path, resumed_step)
        run.update("training", judge, {**record, "status": "running"})

    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    metrics = finish_training(trainer, run, adapter_dir, metrics_path, judge, record, lambda done: par_adapter_card(config, done))
    return ParResult(adapter_dir, checkpoints, metrics_path, metrics, trainer.state.global_step, len(pairs),
                     checkpoint, start_adapter)
