"""The Bradley-Terry baseline as a judge: a sequence classifier's reward read as a pointwise score.

Training it is training/bt.py's job; this module only scores, so the judge registry needs no trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from patarm_kit.config.schema import RunConfig
from patarm_kit.judging.judge import JudgeRequest, prompt_judge
from patarm_kit.judging.models import (
    ADAPTER_WEIGHTS,
    _torch_dtype,
    check_safetensors_only,
    configure_torch,
    resolve_model_path,
)
from patarm_kit.runs.notebooks import progress


def classifier_tokenizer(model_path: str) -> Any:
    """The base tokenizer with a pad token: the classifier reads its score at the last non-pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # as TRL's preference collator
    return tokenizer


def conversation_ids(tokenizer: Any, prompt: Sequence[dict[str, str]], response: str, max_length: int | None) -> list[int]:
    """Prompt + response as TRL tokenizes a training side (chat template, no generation prompt), first max_length tokens."""
    messages = [*prompt, {"role": "assistant", "content": response}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    return list(ids[:max_length])


class BTScorer:
    """A trained BT adapter on its base model: one scalar reward per judge request."""

    def __init__(self, adapter_dir: str | Path, config: RunConfig):
        import torch
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification
        from trl.trainer.reward_trainer import suppress_seqcls_warning

        configure_torch(config.model)
        check_safetensors_only(Path(adapter_dir), ADAPTER_WEIGHTS)
        model_path = resolve_model_path(config.model)
        self.tokenizer = classifier_tokenizer(model_path)
        with suppress_seqcls_warning():  # the score head comes from the adapter, not the base checkpoint
            base = AutoModelForSequenceClassification.from_pretrained(
                model_path, num_labels=1, dtype=_torch_dtype(config.model.dtype), use_safetensors=True
            )
        base.config.pad_token_id = self.tokenizer.pad_token_id  # where the classifier finds the last token
        self.model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
        if torch.accelerator.is_available():
            self.model.to(torch.accelerator.current_accelerator())
        self.max_length = config.bt.max_length
        self.view = prompt_judge(config, self.tokenizer)  # reads its inputs as the generative judge does

    def inputs_cut(self, requests: Sequence[JudgeRequest]) -> list[list[str]]:
        """What was cut of each request: by the judge's budgets, or past bt.max_length (the end of the response)."""
        cut = []
        for request in requests:
            conversation, response, truncated = self.view.fit_inputs(request.prompt, request.response)
            if len(conversation_ids(self.tokenizer, conversation, response, None)) > self.max_length and "response" not in truncated:
                truncated.append("response")
            cut.append(truncated)
        return cut

    def score(self, requests: Sequence[JudgeRequest], batch_size: int = 16) -> list[float]:
        """The reward of each request, in order. Batches hold similar lengths, so little is padded."""
        import torch

        ids = [conversation_ids(self.tokenizer, *self.view.fit_inputs(r.prompt, r.response)[:2], self.max_length)
               for r in requests]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        scores = [0.0] * len(ids)
        for start in progress(range(0, len(order), batch_size), desc="BT scoring", unit="batch"):
            batch = order[start:start + batch_size]
            inputs = self.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            with torch.no_grad():
                rewards = self.model(**inputs.to(self.model.device)).logits[:, 0].float().tolist()
            for i, reward in zip(batch, rewards):
                scores[i] = reward
        return scores
