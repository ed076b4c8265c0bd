"""The scalar Bradley-Terry reward model: the baseline the PaTaRM judge is compared with.

A scalar reward model reads prompt + response and returns one number; it is trained on
preference pairs with the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected). The seed
papers compare generative judges with such models. Here it is the judge's own base model with
a LoRA adapter and a new one-output score head (TRL's RewardTrainer), trained on a seeded draw
of the same training pairs, so a difference on the benchmarks comes from the method, not from
the data or the model size.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patarm_kit.config.rules import ConfigError
from patarm_kit.config.schema import RunConfig
from patarm_kit.data.pairs import PreferencePair
from patarm_kit.judging.bt_scorer import classifier_tokenizer
from patarm_kit.judging.judge import Judge, prompt_judge
from patarm_kit.judging.models import (
    adapter_card,
    adapter_staging,
    configure_torch,
    lora_config,
    lora_summary,
    resolve_model_path,
    save_adapter,
)


@dataclass
class BTResult:
    """What training produced: the adapter folder and how training went."""

    adapter_dir: Path
    base_model: str
    pairs: int  # pairs trained on
    dropped_too_long: int  # drawn pairs with a side longer than bt.max_length (TRL drops them)
    steps: int
    log: list[dict[str, float]]  # one entry per step: step, loss, accuracy, margin
    train_accuracy: float  # share of pairs ordered correctly over the last pass through the data
    seconds: float  # the whole call up to saving the adapter, model loading included
    seconds_per_step: float  # training loop only
    num_processes: int = 1  # launched processes that trained it (accelerate); older manifests: one

    @property
    def final_loss(self) -> float:
        return self.log[-1]["loss"]

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for the run manifest."""
        facts = dataclasses.asdict(self)
        facts["adapter_dir"] = str(self.adapter_dir)
        facts["first_loss"], facts["final_loss"] = self.log[0]["loss"], self.final_loss
        return facts


def preference_rows(pairs: Sequence[PreferencePair], view: Judge) -> list[dict[str, list[dict[str, str]]]]:
    """TRL's conversational explicit-prompt format: the prompt messages, then one assistant turn per side,
    each cut as the judge cuts its inputs (`view.fit_inputs`: early turns dropped, the response clipped)."""
    rows = []
    for pair in pairs:
        conversation, chosen, _ = view.fit_inputs(pair.prompt, pair.chosen)
        _, rejected, _ = view.fit_inputs(pair.prompt, pair.rejected)
        rows.append({"prompt": conversation, "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}]})
    return rows


def recorded_bt(facts: dict[str, Any]) -> BTResult:
    """A BT training as its stage recorded it (`BTResult.summary` in the manifest), for a resumed notebook."""
    fields = {f.name for f in dataclasses.fields(BTResult)}
    return BTResult(**{**{k: v for k, v in facts.items() if k in fields}, "adapter_dir": Path(facts["adapter_dir"])})


def train_bt(config: RunConfig, pairs: list[PreferencePair], out_dir: Path) -> BTResult:
    """Train the LoRA + score-head reward model on `pairs`; save adapter, tokenizer and card in `out_dir`.

    `bt.n_pairs` pairs are drawn with `random.Random(seed).sample`, the draw the judge's SFT and
    PAR stages make: with the same seed, a smaller draw is the start of a larger one, so the BT
    model sees every pair PAR trained on when `bt.n_pairs >= par.n_pairs`.
    """
    import datasets
    import torch
    from trl import RewardConfig, RewardTrainer

    started, out_dir = time.monotonic(), Path(out_dir)
    configure_torch(config.model)
    bt = config.bt
    if bt.n_pairs is not None and bt.n_pairs < len(pairs):
        pairs = random.Random(config.seed).sample(pairs, bt.n_pairs)
    model_path = resolve_model_path(config.model)
    tokenizer = classifier_tokenizer(model_path)
    mixed_bf16 = config.model.dtype == "bfloat16"
    args = RewardConfig(
        output_dir=str(adapter_staging(out_dir)),  # nothing appears at out_dir before the adapter is whole
        max_steps=bt.max_steps,
        per_device_train_batch_size=bt.batch_size,
        learning_rate=bt.learning_rate,
        max_length=bt.max_length,
        # float32 weights with bf16 autocast: the new score head needs updates smaller than bf16 can hold.
        model_init_kwargs={"dtype": torch.float32, "use_safetensors": True},
        bf16=mixed_bf16,
        use_cpu=mixed_bf16 and not torch.cuda.is_available(),  # transformers allows bf16 on CPU only when asked
        gradient_checkpointing=bt.gradient_checkpointing,  # off on CPU: a 135M model fits, recomputing costs time
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=config.seed,
    )
    peft_config = dataclasses.replace(lora_config(config.lora), task_type="SEQ_CLS", modules_to_save=["score"])
    trainer = RewardTrainer(
        model=model_path,
        args=args,
        train_dataset=datasets.Dataset.from_list(preference_rows(pairs, prompt_judge(config, tokenizer))),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    kept = len(trainer.train_dataset)
    if kept == 0:
        raise ConfigError(f"bt.max_length={bt.max_length}: every one of the {len(pairs)} pairs is longer; raise it")
    output = trainer.train()
    log = [
        {key: entry[key] for key in ("step", "loss", "accuracy", "margin")}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    # TRL logs each batch's accuracy just before the update on it; the last pass covers every pair once.
    last_pass = log[-math.ceil(kept / bt.batch_size):]
    result = BTResult(
        adapter_dir=out_dir,
        base_model=config.model.name,
        pairs=kept,
        dropped_too_long=len(pairs) - kept,
        steps=trainer.state.global_step,
        log=log,
        train_accuracy=sum(e["accuracy"] for e in last_pass) / len(last_pass),
        seconds=time.monotonic() - started,
        seconds_per_step=output.metrics["train_runtime"] / max(trainer.state.global_step, 1),
        num_processes=trainer.accelerator.num_processes,
    )
    save_adapter(trainer.model, tokenizer, out_dir, _card(config, result))
    return result


def _card(config: RunConfig, result: BTResult) -> str:
    return adapter_card(
        "Scalar Bradley-Terry reward model (baseline)",
        f"LoRA adapter and score head for `{result.base_model}` as a sequence classifier with one output, made by "
        f"`patarm_kit.training.bt.train_bt` with TRL's RewardTrainer. The baseline the PaTaRM judge is compared with.",
        [f"data: {result.pairs} training pairs, seed {config.seed}; {result.dropped_too_long} drawn pairs "
         f"longer than {config.bt.max_length} tokens dropped",
         f"steps: {result.steps}, batch size {config.bt.batch_size} pairs, learning rate {config.bt.learning_rate}",
         f"loss: {result.log[0]['loss']:.3f} -> {result.final_loss:.3f}; "
         f"train accuracy (last pass over the data): {result.train_accuracy:.3f}",
         f"LoRA: {lora_summary(config.lora)}"],
        "Score with `patarm_kit.judging.bt_scorer.BTScorer(<this folder>, config).score(requests)`.")
