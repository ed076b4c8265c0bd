"""The expected-score readout, the controls' settings and the primary comparison: pure functions and the real model."""

import math

import pytest

from patarm_kit.config import ConfigError, load_config
from patarm_kit.data import PreferencePair
from patarm_kit.evaluate import compute_metrics, paired_difference
from patarm_kit.judge import Judgment, expected_score, score_digit_ids
from patarm_kit.prompts import score_position
from patarm_kit.models import load_tokenizer
from patarm_kit.par import rewards_for_batch
from patarm_kit.train import shuffled_labels

DIGITS = {d: 100 + d for d in range(10)}  # a made-up tokenizer: digit d is token 100 + d


def test_expected_score_is_the_probability_weighted_mean():
    assert expected_score({107: 0.0}, {}, DIGITS) == 7.0
    # P(first "1") = .5, P(5) = .5; after "1", P("0") = .5 and the rest is no digit: 1 and 10 split the .5.
    first, after = {101: math.log(0.5), 105: math.log(0.5)}, {100: math.log(0.5)}
    assert expected_score(first, after, DIGITS) == pytest.approx(0.25 * 1 + 0.25 * 10 + 0.5 * 5)


def test_no_score_digit_among_the_candidates_reads_as_none():
    assert expected_score({5: 0.0, 6: -1.0}, {}, DIGITS) is None


def test_the_score_position_is_after_the_last_score_tag_or_a_forced_one():
    assert score_position("<criteria>x</criteria> <score>7</score>") == ("<criteria>x</criteria> <score>", False)
    assert score_position("the judge ran out of tokens") == ("the judge ran out of tokens\n<score>", True)


def test_smollm2_writes_each_digit_as_one_token():
    ids = score_digit_ids(load_tokenizer(load_config("smoke").model))
    assert ids is not None and len(set(ids.values())) == 10


def _judgment(pid, side, score, expected):
    return Judgment(pid, side, "instruction", 0, "", score, None if score else "no_score_tag", [], 0, 0, False,
                    expected_score=expected, score_forced=score is None)


def test_metrics_carry_both_readouts_and_the_expected_one_breaks_ties():
    # Sampled scores tie on both pairs (one invalid side); expected scores order them correctly.
    judgments = [_judgment("a", "chosen", 7, 7.4), _judgment("a", "rejected", 7, 6.1),
                 _judgment("b", "chosen", None, 6.0), _judgment("b", "rejected", 3, 5.0)]
    metrics = compute_metrics("pairs:x", judgments, {"a": "x", "b": "x"}, "half", n_boot=50)
    assert metrics["acc"] == 0.5 and metrics["expected"]["acc"] == 1.0
    assert metrics["expected"]["forced"] == 1 and metrics["invalid"]["judgments"] == 1
    assert [i["outcome_expected"] for i in metrics["items"]] == [1.0, 1.0]
    assert metrics["inputs_truncated"] == {"judgments": 0, "of": 4, "share": 0.0}
    other = {**metrics, "judge": "b", "items": [{**i, "outcome_expected": 0.0} for i in metrics["items"]]}
    assert paired_difference({**metrics, "judge": "a"}, other, 50, readout="expected")["diff"] == 1.0


def test_judges_without_an_expected_score_keep_the_old_metrics():
    judgments = [_judgment("a", "chosen", 7, None), _judgment("a", "rejected", 3, None)]
    metrics = compute_metrics("pairs:x", judgments, {"a": "x"}, "half", n_boot=50)
    assert "expected" not in metrics and "outcome_expected" not in metrics["items"][0]


def test_shuffled_labels_swap_a_seeded_half():
    pairs = [PreferencePair(str(i), "s", "chat", ({"role": "user", "content": "q"},), f"good {i}", f"bad {i}") for i in range(10)]
    shuffled = shuffled_labels(pairs, seed=0)
    swapped = [p.chosen.startswith("bad") for p in shuffled]
    assert sum(swapped) == 5 and shuffled == shuffled_labels(pairs, seed=0) and swapped != [s.chosen.startswith("bad") for s in shuffled_labels(pairs, seed=1)]


def test_format_mode_rewards_a_readable_score_whatever_the_preference():
    rewards = rewards_for_batch(["p", "p", "p", "p"], ["chosen", "chosen", "rejected", "rejected"], [9, None, 9, 1], mode="format")
    assert rewards == [1.0, 0.0, 1.0, 1.0]


def test_variants_and_the_primary_comparison_are_checked():
    config = load_config("cpu-ablations")
    assert config.par_variant("shuffled").par.shuffle_labels and config.par_variant("graded").par.mode == "graded"
    assert config.par_variant("shuffled").par.n_pairs == config.par.n_pairs  # everything else as the profile's PAR
    assert config.eval.primary == {"a": "par", "b": "sft", "bench": "pairs:verifiable-if", "readout": "expected"}
    with pytest.raises(ConfigError, match="par.variants.x.modee"):
        load_config("cpu", {"par.variants": {"x": {"modee": "format"}}})
    with pytest.raises(ConfigError, match="par.variants.x.mode"):
        load_config("cpu", {"par.variants": {"x": {"mode": "nonsense"}}})
    with pytest.raises(ConfigError, match="eval.primary"):
        load_config("cpu", {"eval.primary": {"a": "par", "b": "sft"}})
    with pytest.raises(ConfigError, match="no 'nope'"):
        config.par_variant("nope")


def test_the_pairwise_judge_gets_its_own_token_budget():
    from patarm_kit.evaluate import evaluation_sampling
    from patarm_kit.judges import parse_judge

    config = load_config("cpu")
    assert evaluation_sampling(config, parse_judge("pairwise")).max_new_tokens == 256
    assert evaluation_sampling(config, parse_judge("base")) == config.eval.sampling
    assert evaluation_sampling(load_config("cpu", {"eval.pairwise_sampling": None}), parse_judge("pairwise")) == config.eval.sampling
