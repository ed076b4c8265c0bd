"""Batched judging: request order, sampling per request, truncation, voting; the real model end to end."""

import dataclasses

import pytest

from patarm_kit.config.schema import JudgeConfig, ModelConfig, SamplingConfig, SourceConfig
from patarm_kit.data.loading import load_source
from patarm_kit.judging.engine import Completion, HFEngine
from patarm_kit.judging.judge import (
    CHUNK_SEQUENCES,
    Judge,
    judging_summary,
    read_judgments,
    requests_for_pairs,
    requests_for_style_variants,
    save_judgments,
    vote,
    voted_scores,
)
from patarm_kit.judging.models import load_tokenizer
from patarm_kit.judging.rubrics import load_rubrics


class ScriptedEngine:
    """Answers each prompt with a judgment whose score is the prompt's length mod 10 + 1.

    Lets the tests check that results come back in request order, and what the judge asks of its engine.
    """

    def __init__(self, tokenizer=None):
        self.calls, self.adapters, self.reads, self.tokenizer = [], [], [], tokenizer

    def generate(self, prompts, sampling, seed, first_index=0, seeds=None):
        self.calls.append((len(prompts), sampling, seed, first_index))
        return [[Completion(f"<criteria>\n- a: b\n</criteria><score>{len(p) % 10 + 1}</score>", 12, True)] * sampling.n
                for p in prompts]

    def next_token_logprobs(self, prompts, top):
        """The readout's reads: after "<score>" the digit 7 is certain, after "<score>1" no "0" follows."""
        self.reads.append(prompts)
        seven = self.tokenizer("7", add_special_tokens=False)["input_ids"][0] if self.tokenizer else -1
        return [{seven: 0.0} for _ in prompts]

    def use_adapter(self, adapter):
        self.adapters.append(adapter)

    def settings(self):
        return {"engine": "scripted"}

    def close(self):
        pass


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelConfig())


@pytest.fixture(scope="module")
def pairs(data_dir):
    return load_source(SourceConfig("hh-rlhf", bad_rows="skip", limit=6), data_dir)[0]


def test_requests_keep_both_sides_adjacent(pairs):
    requests = requests_for_pairs(pairs)
    assert [r.side for r in requests[:4]] == ["chosen", "rejected", "chosen", "rejected"]
    assert requests[1].response == pairs[0].rejected and requests[1].pair_id == pairs[0].id


def test_rmbench_requests_cover_all_six_styles(data_dir):
    pairs = load_source("rm-bench", data_dir)[0][:2]
    requests = requests_for_style_variants(pairs)
    assert [r.side for r in requests[:6]] == ["chosen_0", "chosen_1", "chosen_2", "rejected_0", "rejected_1", "rejected_2"]
    assert requests[5].response == pairs[0].rejected_variants[2]


def test_results_come_back_in_request_order_with_n_samples(tokenizer, pairs):
    engine = ScriptedEngine(tokenizer)
    sampling = SamplingConfig(n=3, temperature=0.7, max_new_tokens=40)
    judge = Judge(tokenizer, engine, JudgeConfig(batch_size=6), load_rubrics(), seed=5, sampling=sampling, adapter="some/adapter")
    requests = requests_for_pairs(pairs)
    judgments = judge.judge(requests)
    assert len(judgments) == 3 * len(requests)
    assert [(j.pair_id, j.side) for j in judgments[::3]] == [(r.pair_id, r.side) for r in requests]
    assert [j.sample for j in judgments[:3]] == [0, 1, 2]
    expected = [len(judge.prompt_text(r)[0]) % 10 + 1 for r in requests]
    assert [j.score for j in judgments[::3]] == expected
    assert engine.calls == [(len(requests), sampling, 5, 0)], "a chunk's requests in one call: the engine schedules them"
    assert engine.adapters == ["some/adapter"], "engines are shared: the judge asks for its adapter on every call"
    assert judge.engine_settings() == {"engine": "scripted"}
    judge.judge(requests[:2], n_samples=1)
    assert engine.calls[-1] == (2, dataclasses.replace(sampling, n=1), 5, 0) and engine.adapters == ["some/adapter"] * 2
    assert all(j.criteria == ["a: b"] and j.task in ("chat", "safety") for j in judgments)
    # The readout: two one-token reads per judgment, after its "<score>" and after "<score>1".
    (reads, *_) = engine.reads
    assert len(reads) == 2 * len(judgments) and reads[0].endswith("<score>") and reads[1].endswith("<score>1")
    assert all(j.expected_score == 7.0 and not j.score_forced for j in judgments)


def test_long_calls_go_in_chunks_that_keep_each_requests_seed_and_read_while_cached(tokenizer, pairs):
    """Each chunk's reads follow its generation (vLLM's prefix cache still holds its prompts);
    `first_index` gives every request the seed it would get in one call."""
    engine = ScriptedEngine(tokenizer)
    judge = Judge(tokenizer, engine, JudgeConfig(), load_rubrics(), seed=5, sampling=SamplingConfig(n=4))
    requests = (requests_for_pairs(pairs) * 30)[:CHUNK_SEQUENCES // 4 * 2 + 3]
    judgments = judge.judge(requests)
    per_chunk = CHUNK_SEQUENCES // 4
    assert [(size, first) for size, _, _, first in engine.calls] == [(per_chunk, 0), (per_chunk, per_chunk), (3, 2 * per_chunk)]
    assert [len(reads) for reads in engine.reads] == [2 * 4 * per_chunk, 2 * 4 * per_chunk, 2 * 4 * 3]
    assert [(j.pair_id, j.side) for j in judgments[::4]] == [(r.pair_id, r.side) for r in requests]


def test_inputs_are_cut_to_their_token_budgets(tokenizer, pairs):
    config = JudgeConfig(max_prompt_tokens=8, max_response_tokens=5)
    judge = Judge(tokenizer, ScriptedEngine(), config, load_rubrics())
    long = dataclasses.replace(requests_for_pairs(pairs)[0], response="word " * 50)
    text, truncated = judge.prompt_text(long)
    assert truncated == ["prompt", "response"] and "word word word word word [...]" in text
    assert "word " * 6 not in text


def test_voting():
    assert vote([7, None, 9]) == 8.0
    assert vote([None, None]) is None
    assert vote([3, 3, 9], "majority") == 3
    assert vote([3, 9], "majority") == 6.0
    with pytest.raises(ValueError, match="voting"):
        vote([1], "median")


def test_voted_scores_respect_the_vote_budget(tokenizer, pairs):
    judge = Judge(tokenizer, ScriptedEngine(), JudgeConfig(), load_rubrics(), sampling=SamplingConfig(n=4))
    judgments = judge.judge(requests_for_pairs(pairs[:1]))
    judgments[0].score = 1
    one = voted_scores(judgments, votes=1)
    assert one[(pairs[0].id, "chosen")] == 1
    assert voted_scores(judgments)[(pairs[0].id, "chosen")] == pytest.approx((1 + 3 * judgments[1].score) / 4)


def test_judgments_round_trip(tmp_path, tokenizer, pairs):
    judge = Judge(tokenizer, ScriptedEngine(), JudgeConfig(), load_rubrics(), sampling=SamplingConfig(n=2))
    judgments = judge.judge(requests_for_pairs(pairs[:2]))
    save_judgments(judgments, tmp_path / "j.jsonl")
    assert read_judgments(tmp_path / "j.jsonl") == judgments


@pytest.mark.model
def test_real_model_judges_and_records_every_sample(smollm, pairs):
    model, tokenizer = smollm
    sampling = SamplingConfig(n=2, temperature=1.0, max_new_tokens=24)
    judge = Judge(tokenizer, HFEngine(model, tokenizer, batch_size=4), JudgeConfig(), load_rubrics(), seed=7, sampling=sampling)
    requests = requests_for_pairs(pairs[:1])  # one pair: both sides, two samples each
    first = judge.judge(requests)
    again = judge.judge(requests)
    assert [j.text for j in first] == [j.text for j in again], "seeded sampling repeats exactly"
    assert len(first) == 4 and all(0 < j.completion_tokens <= 24 for j in first)
    assert all(j.completion_tokens == 24 for j in first if j.truncated), "truncated means the limit was hit"
    for j in first:
        assert (j.score is None) == (j.invalid_reason is not None)
    summary = judging_summary(first)
    assert summary["judgments"] == 4 and summary["tokens_per_second"] > 0
