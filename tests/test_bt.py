"""The scalar Bradley-Terry baseline: TRL reads our rows as intended, and a real tiny run trains, saves and reloads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from patarm_kit.config.loader import load_config
from patarm_kit.config.schema import ModelConfig, SourceConfig
from patarm_kit.data.loading import load_source
from patarm_kit.judging.bt_scorer import BTScorer, classifier_tokenizer, conversation_ids
from patarm_kit.judging.judge import JudgeRequest, prompt_judge, requests_for_pairs
from patarm_kit.judging.models import resolve_model_path
from patarm_kit.training.bt import BTResult, preference_rows, recorded_bt, train_bt


@pytest.fixture(scope="module")
def hh_pairs(data_dir):
    pairs, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip", limit=16), data_dir)
    return pairs


def test_rows_put_prompt_and_responses_where_trl_expects_them(hh_pairs):
    import datasets
    from trl import RewardConfig, RewardTrainer
    from trl.data_utils import is_conversational

    pair = hh_pairs[0]
    tokenizer = classifier_tokenizer(resolve_model_path(ModelConfig()))
    view = prompt_judge(load_config("smoke"), tokenizer)
    assert view.fit_inputs(pair.prompt, pair.chosen)[2] == []  # a short pair: nothing to cut
    (row,) = preference_rows([pair], view)
    assert row["prompt"] == list(pair.prompt) and row["prompt"][-1]["role"] == "user"
    assert row["chosen"] == [{"role": "assistant", "content": pair.chosen}]
    assert row["rejected"] == [{"role": "assistant", "content": pair.rejected}]
    assert is_conversational(row)

    # TRL's own preprocessing (explicit prompt: prompt + side, chat template) gives the token ids
    # the scorer reads for the same prompt and response.
    args = RewardConfig(output_dir="unused", max_length=None, bf16=False, gradient_checkpointing=False, report_to="none")
    (tokenized,) = RewardTrainer._prepare_dataset(None, datasets.Dataset.from_list([row]), tokenizer, args, "train")
    assert tokenized["chosen_ids"] == conversation_ids(tokenizer, pair.prompt, pair.chosen, 10**6)
    assert tokenized["rejected_ids"] == conversation_ids(tokenizer, pair.prompt, pair.rejected, 10**6)


@pytest.mark.slow
@pytest.mark.model
def test_tiny_real_training_saves_an_adapter_that_scores_deterministically(hh_pairs, tmp_path):
    # The 2 shortest pairs in one batch, 3 steps on that batch: fast, and the loss must go down.
    pairs = sorted(hh_pairs, key=lambda p: len(p.prompt_text) + len(p.chosen) + len(p.rejected))[:2]
    config = load_config("smoke", {
        "bt.n_pairs": None, "bt.max_steps": 3, "bt.batch_size": 2, "bt.learning_rate": 1e-3, "bt.max_length": 256,
    })
    result = train_bt(config, pairs, tmp_path / "bt")

    assert result.steps == 3 and len(result.log) == 3 and result.pairs + result.dropped_too_long == 2
    assert result.pairs > 0
    assert all(math.isfinite(e["loss"]) for e in result.log)
    assert result.final_loss < result.log[0]["loss"]
    assert 0.0 <= result.train_accuracy <= 1.0
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert "Bradley-Terry" in (result.adapter_dir / "README.md").read_text()

    scorer = BTScorer(result.adapter_dir, config)
    long_request = JudgeRequest("long", "chosen", pairs[0].prompt, "word " * 2000, "chat")  # cut to max_length
    requests = [*requests_for_pairs(pairs), long_request]
    scores = scorer.score(requests, batch_size=3)
    assert len(scores) == len(requests) and all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert scorer.score(requests, batch_size=3) == scores
    cut = scorer.inputs_cut(requests)
    assert cut[-1] == ["response"]  # clipped to judge.max_response_tokens, as the judge reads it
    assert cut[:-1] == [scorer.view.fit_inputs(r.prompt, r.response)[2] for r in requests[:-1]]


def test_bt_reads_what_the_judge_reads(hh_pairs):
    """The same truncation rule as the judge: early turns dropped, the response clipped (not the end cut off)."""
    tokenizer = classifier_tokenizer(resolve_model_path(ModelConfig()))
    view = prompt_judge(load_config("smoke", {"judge.max_response_tokens": 8}), tokenizer)
    pair = next(p for p in hh_pairs if len(p.chosen.split()) > 40)
    (row,) = preference_rows([pair], view)
    assert row["chosen"][0]["content"] == view.clip(pair.chosen, 8)[0] and row["chosen"][0]["content"].endswith(" [...]")


def test_a_recorded_bt_training_reads_back_as_it_was_trained():
    """A resumed notebook 03 shows the BT stage from its manifest record (`BTResult.summary`, stored as JSON)."""
    log = [{"step": 1, "loss": 0.71, "accuracy": 0.5, "margin": 0.01}, {"step": 2, "loss": 0.64, "accuracy": 0.75, "margin": 0.2}]
    result = BTResult(Path("/runs/r/bt/adapter"), "smollm2-135m-instruct", 8, 1, 2, log, 0.75, 31.5, 12.25)
    assert recorded_bt(json.loads(json.dumps(result.summary()))) == result
