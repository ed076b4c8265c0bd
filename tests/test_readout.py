"""The readouts (greedy, expected, sampled-mean, sampled-expected), the controls' settings and the primary comparison:
pure functions, a run judged by a scripted engine, and the real model."""

import dataclasses
import json
import math

import pytest

from patarm_kit.config.build import par_variant
from patarm_kit.config.loader import REPO_ROOT, load_config
from patarm_kit.config.rules import ConfigError, readout_name
from patarm_kit.config.schema import JudgeConfig, ModelConfig, SamplingConfig, SourceConfig
from patarm_kit.data.loading import load_source
from patarm_kit.data.pairs import PreferencePair
from patarm_kit.evaluation import evaluate as evaluation
from patarm_kit.evaluation.curve import curve_row, curve_sampling
from patarm_kit.evaluation.evaluate import compute_metrics, paired_difference, paired_differences
from patarm_kit.judging.engine import Completion, response_seed
from patarm_kit.judging.judge import (
    SAMPLED_MEAN,
    EvalError,
    Judge,
    Judgment,
    expected_score,
    read_judgments,
    readout_score,
    requests_for_pairs,
    save_judgments,
    score_digit_ids,
)
from patarm_kit.judging.models import load_tokenizer
from patarm_kit.judging.prompts import score_position
from patarm_kit.judging.registry import parse_judge
from patarm_kit.judging.rubrics import load_rubrics
from patarm_kit.report.figures import benchmark_bars_data, plot_benchmark_bars, plot_learning_curve, suite_metrics
from patarm_kit.report.summary import render_summary, summary_json
from patarm_kit.report.tables import readout_frame
from patarm_kit.report.verify import verify_run
from patarm_kit.runs.files import read_json
from patarm_kit.runs.layout import RunLayout
from patarm_kit.runs.run import Run
from patarm_kit.training.par import shuffled_labels
from patarm_kit.training.par_reward import rewards_for_batch

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
    assert par_variant(config, "shuffled").par.shuffle_labels and par_variant(config, "graded").par.mode == "graded"
    assert par_variant(config, "shuffled").par.n_pairs == config.par.n_pairs  # everything else as the profile's PAR
    assert config.eval.primary == {"a": "par", "b": "sft", "bench": "pairs:verifiable-if", "readout": "expected"}
    with pytest.raises(ConfigError, match="par.variants.x.modee"):
        load_config("cpu", {"par.variants": {"x": {"modee": "format"}}})
    with pytest.raises(ConfigError, match="par.variants.x.mode"):
        load_config("cpu", {"par.variants": {"x": {"mode": "nonsense"}}})
    with pytest.raises(ConfigError, match="eval.primary"):
        load_config("cpu", {"eval.primary": {"a": "par", "b": "sft"}})
    with pytest.raises(ConfigError, match="no 'nope'"):
        par_variant(config, "nope")


def test_the_pairwise_judge_gets_its_own_token_budget():
    from patarm_kit.evaluation.evaluate import evaluation_sampling
    from patarm_kit.judging.registry import parse_judge

    config = load_config("cpu")
    assert evaluation_sampling(config, parse_judge("pairwise")).max_new_tokens == 256
    assert evaluation_sampling(config, parse_judge("base")) == config.eval.sampling
    assert evaluation_sampling(load_config("cpu", {"eval.pairwise_sampling": None}), parse_judge("pairwise")) == config.eval.sampling


# ---------------------------------------------------------------- the sampled-mean readout, by hand

# Three pairs. Greedy: a ties 7-7, b wins 3-2, c loses 4-5. Sampled-mean (the mean of the valid
# samples): a wins 7-5, b ties (its rejected side has no valid sample), c ties 6-6.
GREEDY = {("a", "chosen"): 7, ("a", "rejected"): 7, ("b", "chosen"): 3, ("b", "rejected"): 2,
          ("c", "chosen"): 4, ("c", "rejected"): 5}
SAMPLES = {("a", "chosen"): [8, 6, None, 7], ("a", "rejected"): [5, 5, 6, 4], ("b", "chosen"): [3, 3, 3, 3],
           ("b", "rejected"): [None] * 4, ("c", "chosen"): [6, 6, 6, 6], ("c", "rejected"): [7, 5, 6, 6]}
GROUPS = {"a": "x", "b": "x", "c": "x"}


def _sample(pid, side, k, score, expected=None):
    return Judgment(pid, side, "chat", k, "", score, None if score else "no_score_tag", [], 0, 0, False,
                    expected_score=expected, draw=SAMPLED_MEAN)


def _by_hand(expected=None):
    judgments = [_judgment(pid, side, score, expected and expected[(pid, side)]) for (pid, side), score in GREEDY.items()]
    samples = [_sample(pid, side, k, score) for (pid, side), scores in SAMPLES.items() for k, score in enumerate(scores)]
    return judgments, samples


def test_the_sampled_mean_readout_is_the_mean_of_the_valid_samples():
    judgments, samples = _by_hand()
    metrics = compute_metrics("pairs:x", judgments, GROUPS, "half", n_boot=50, samples=samples)
    assert metrics["acc"] == 0.5 and [i["outcome"] for i in metrics["items"]] == [0.5, 1.0, 0.0]
    assert [i["outcome_sampled_mean"] for i in metrics["items"]] == [1.0, 0.5, 0.5]
    section = metrics["sampled_mean"]
    assert section["acc"] == 2 / 3 and section["n"] == 3 and section["samples"] == 4
    assert section["invalid"] == {"responses": 1, "of": 6, "share": 1 / 6}
    assert metrics["invalid"]["judgments"] == 0  # the greedy readout counts its own judgments only
    assert compute_metrics("pairs:x", judgments, GROUPS, "zero", n_boot=50, samples=samples)["sampled_mean"]["acc"] == 1 / 3
    assert "sampled_mean" not in compute_metrics("pairs:x", judgments, GROUPS, "half", n_boot=50)
    with pytest.raises(EvalError, match="1 judged responses have no sampled-mean samples"):
        compute_metrics("pairs:x", judgments, GROUPS, "half", n_boot=50,
                        samples=[s for s in samples if (s.pair_id, s.side) != ("c", "rejected")])


def test_the_sampled_expected_readout_is_the_mean_expected_score_of_the_same_samples():
    """Each sample's expected score, averaged per response: a sample with no written score still has one
    (its `<score>` tag was added), so b's rejected side is read; the written scores tie a and c."""
    judgments, _ = _by_hand()
    expected = {("a", "chosen"): [5.5, 5.5, 5.0, 6.0], ("a", "rejected"): [5.6, 5.4, 5.5, 5.5],
                ("b", "chosen"): [3.2] * 4, ("b", "rejected"): [2.0, 2.5, 3.0, 2.5],
                ("c", "chosen"): [6.1] * 4, ("c", "rejected"): [5.9] * 4}
    samples = [_sample(pid, side, k, score, expected[(pid, side)][k])
               for (pid, side), scores in SAMPLES.items() for k, score in enumerate(scores)]
    metrics = compute_metrics("pairs:x", judgments, GROUPS, "half", n_boot=50, samples=samples)
    assert [i["outcome_sampled_mean"] for i in metrics["items"]] == [1.0, 0.5, 0.5]  # unchanged by the expected scores
    assert [i["outcome_sampled_expected"] for i in metrics["items"]] == [0.5, 1.0, 1.0]  # a: 5.5 vs 5.5
    section = metrics["sampled_expected"]
    assert section["acc"] == 5 / 6 and section["samples"] == 4
    assert section["invalid"] == {"responses": 0, "of": 6, "share": 0.0}
    assert readout_score(samples[0], "sampled-expected") == 5.5 and readout_score(samples[0], "sampled-mean") == 8
    # Samples drawn before the readout existed carry no expected score: no section, as in committed runs.
    assert "sampled_expected" not in compute_metrics("pairs:x", judgments, GROUPS, "half", n_boot=50, samples=_by_hand()[1])


def test_paired_differences_and_curve_rows_carry_every_readout_measured():
    expected = {key: 5.0 + (key[1] == "chosen") for key in GREEDY}  # chosen 6, rejected 5: always right
    judgments, samples = _by_hand(expected)
    ours = {**compute_metrics("pairs:x", judgments, GROUPS, "half", n_boot=50, samples=samples), "judge": "ours", "step": 16}
    undrawn = {**compute_metrics("pairs:x", judgments, GROUPS, "half", n_boot=50), "judge": "undrawn"}
    rows = paired_differences([ours, {**ours, "judge": "twin"}, undrawn], [["ours", "twin"], ["ours", "undrawn"]], 50, 0)
    assert [(r["b"], r.get("readout")) for r in rows] == [("twin", None), ("twin", "expected"), ("twin", "sampled-mean"),
                                                          ("undrawn", None), ("undrawn", "expected")]
    assert paired_difference(ours, undrawn, 50, readout="sampled") == rows[3]  # the old name of greedy
    row = curve_row(ours)
    assert row == {"step": 16, "acc": 0.5, "ci95": ours["ci95"]["acc"], "acc_expected": 1.0, "ci95_expected": [1.0, 1.0],
                   "acc_sampled_mean": 2 / 3, "ci95_sampled_mean": ours["sampled_mean"]["ci95"]["acc"],
                   "acc_sampled_expected": None, "ci95_sampled_expected": None, "invalid_share": 0.0, "n": 3}
    plot_learning_curve([row, {**row, "step": 32}])
    committed = curve_row(read_json(RunLayout(REPO_ROOT / "results" / "lr-probe-1e-4").curve_metrics(16)))
    assert committed["acc_expected"] is not None and committed["acc_sampled_mean"] is None  # measured before it existed


def test_the_greedy_readout_was_called_sampled():
    assert readout_name("sampled") == readout_name("greedy") == "greedy" and readout_name("sampled-mean") == "sampled-mean"
    with pytest.raises(ConfigError, match="unknown readout 'votes'"):
        readout_name("votes")
    judgment = _judgment("a", "chosen", 7, 6.5)
    assert readout_score(judgment, "sampled") == readout_score(judgment, "greedy") == 7 and readout_score(judgment, "expected") == 6.5
    # Profiles and older runs' configs that say "sampled" load, and keep it as written: their fingerprint.
    primary = {"a": "par", "b": "sft", "bench": "pairs:hh-rlhf", "readout": "sampled"}
    config = load_config("cpu", {"policy.readout": "sampled", "eval.primary": primary})
    assert config.to_dict()["policy"]["readout"] == "sampled" and config.eval.primary == primary
    with pytest.raises(ConfigError, match="policy.readout"):
        load_config("cpu", {"policy.readout": "sampled-mean"})  # a policy's reward reads its judge's own judgments
    with pytest.raises(ConfigError, match="eval.primary.readout: unknown readout 'mode'"):
        load_config("cpu", {"eval.primary": {**primary, "readout": "mode"}})


def test_the_sampled_mean_block_is_checked_and_an_unset_one_stays_out_of_the_record():
    cpu = load_config("cpu")
    assert cpu.eval.sampled_mean is None and "sampled_mean" not in cpu.to_dict()["eval"]  # committed runs' fingerprints
    block = {"n": 4, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 96}
    on = load_config("cpu", {"eval.sampled_mean": block})
    assert on.to_dict()["eval"]["sampled_mean"] == block and on.fingerprint() != cpu.fingerprint()
    with pytest.raises(ConfigError, match="eval.sampled_mean.n: must be at least 4, got 2"):
        load_config("cpu", {"eval.sampled_mean": {"n": 2}})
    primary = {"a": "par", "b": "sft", "bench": "pairs:hh-rlhf", "readout": "sampled-mean"}
    with pytest.raises(ConfigError, match="eval.primary.readout: sampled-mean reads the judgments eval.sampled_mean draws"):
        load_config("cpu", {"eval.primary": primary})
    assert load_config("cpu", {"eval.primary": primary, "eval.sampled_mean": block}).eval.primary == primary
    with pytest.raises(ConfigError, match="eval.primary.readout: sampled-expected reads the judgments eval.sampled_mean draws"):
        load_config("cpu", {"eval.primary": {**primary, "readout": "sampled-expected"}})
    # The learning curve samples as PAR's rollouts, k from eval.sampled_mean or at least 4.
    assert curve_sampling(cpu) == dataclasses.replace(cpu.par.rollouts, n=4)
    assert curve_sampling(load_config("cpu", {"eval.sampled_mean": {**block, "n": 6}})) == dataclasses.replace(cpu.par.rollouts, n=6)


# ---------------------------------------------------------------- drawing: a scripted engine, a run


class SeededEngine:
    """Writes a judgment whose score follows the seed of each sample (some without a score), and a
    certain 7 where the expected score is read: the records show which seeds made them."""

    def __init__(self, tokenizer, offset=0):
        self.offset, self.calls, self.blocks, self.reads = offset, [], [], 0
        self.seven = score_digit_ids(tokenizer)[7]

    def generate(self, prompts, sampling, seed, first_index=0, seeds=None):
        self.calls.append(seeds)
        self.blocks.append(sampling)
        starts = [seed * 1000 + first_index + i for i in range(len(prompts))] if seeds is None else seeds
        return [[Completion(self.text_field(start + k), 5, True) for k in range(sampling.n)] for start in starts]

    def text_field(self, value):
        value += self.offset
        return "<criteria>\n- a: b\n</criteria>" + ("no score" if value % 7 == 0 else f"<score>{value % 10 + 1}</score>")

    def next_token_logprobs(self, prompts, top):
        self.reads += len(prompts)
        return [{self.seven: 0.0} for _ in prompts]

    def use_adapter(self, adapter):
        pass

    def settings(self):
        return {"engine": "seeded"}

    def close(self):
        pass


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelConfig())


def test_draws_are_seeded_by_their_response_and_stored_beside_the_judgments(tokenizer, data_dir, tmp_path):
    requests = requests_for_pairs(load_source(SourceConfig("hh-rlhf", bad_rows="skip", limit=3), data_dir)[0])
    engine = SeededEngine(tokenizer)
    judge = Judge(tokenizer, engine, JudgeConfig(), load_rubrics(), seed=3, sampling=SamplingConfig(temperature=0.0))
    block = SamplingConfig(n=4, temperature=1.0)
    drawn = judge.draw(requests, block)
    assert engine.calls == [[response_seed(3, r.pair_id, r.side) for r in requests]]
    assert engine.reads == 2 * len(drawn) and {j.expected_score for j in drawn} == {7.0}  # each sample's expected score
    assert [(j.pair_id, j.side, j.sample, j.draw) for j in drawn[:4]] == [(requests[0].pair_id, "chosen", k, SAMPLED_MEAN) for k in range(4)]
    alone = judge.draw(requests[3:4], block)  # a response gets the same draws whatever else is judged with it
    assert [(j.text, j.score) for j in alone] == [(j.text, j.score) for j in drawn[12:16]]
    own = judge.judge(requests)
    assert engine.calls[-1] is None and all(j.draw is None and "draw" not in j.to_row() for j in own)
    save_judgments([*own, *drawn], tmp_path / "j.jsonl")
    assert read_judgments(tmp_path / "j.jsonl") == own and read_judgments(tmp_path / "j.jsonl", SAMPLED_MEAN) == drawn


@pytest.fixture
def sampled_run(run_copy, tokenizer, monkeypatch):
    """The small run (its eval.sampled_mean draws 4 per response) plus two generative judges
    on held-out pairs, `base` and `sft`, evaluated through `evaluate` with scripted engines."""
    def scripted(spec, config, sampling):
        engine = SeededEngine(tokenizer, offset=3 if spec.kind == "adapter" else 0)
        return Judge(tokenizer, engine, config.judge, load_rubrics(), seed=config.seed, sampling=sampling)

    monkeypatch.setattr(evaluation, "build_judge", scripted)
    config, layout = Run.open(run_copy).config(), RunLayout(run_copy)
    assert config.eval.sampled_mean == SamplingConfig(n=4, temperature=1.0, top_p=1.0, max_new_tokens=32)
    for label, spec in (("base", "base"), ("sft", "adapter:sft/adapter")):
        evaluation.evaluate(config, parse_judge(spec), "pairs:hh-rlhf", layout.eval_metrics(label, "pairs:hh-rlhf"), 4, label=label)
    return run_copy


def test_an_evaluation_stores_its_draws_and_verify_rebuilds_the_readout(sampled_run):
    metrics_file = RunLayout(sampled_run).eval_metrics("sft", "pairs:hh-rlhf")
    metrics = read_json(metrics_file)
    assert metrics["sampled_mean_sampling"] == {"n": 4, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 32}
    assert metrics["sampled_mean"]["samples"] == 4 and {"expected", "sampled_mean", "sampled_expected"} <= metrics.keys()
    own, drawn = (read_judgments(RunLayout.judgments_of(metrics_file), draw) for draw in (None, SAMPLED_MEAN))
    assert len(own) == 8 and len(drawn) == 32
    assert "sampled_mean" not in read_json(RunLayout(sampled_run).eval_metrics("length", "pairs:hh-rlhf"))
    report = verify_run(sampled_run)
    assert report.ok, report.summary()


def _edit_samples(judgments_file, change):
    rows = [json.loads(line) for line in judgments_file.read_text().splitlines()]
    for row in rows:
        if row.get("draw") == SAMPLED_MEAN:
            change(row)
    judgments_file.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_verify_catches_a_tampered_sample(sampled_run):
    judgments_file = RunLayout.judgments_of(RunLayout(sampled_run).eval_metrics("sft", "pairs:hh-rlhf"))
    first = []

    def change_one_score(row):  # a hand edit of one sample's score: its text says otherwise
        if not first and row["score"] is not None:
            first.append(row)
            row["score"] = row["score"] % 10 + 1

    _edit_samples(judgments_file, change_one_score)
    fields = [(d.file, d.field) for d in verify_run(sampled_run).differences]
    assert (judgments_file.relative_to(sampled_run).as_posix(),
            f"line 9 ({first[0]['pair_id']}, chosen, sampled-mean sample 0).score") in fields


def test_verify_rebuilds_the_readout_from_the_samples(sampled_run):
    """Samples rewritten consistently (text and score) so every chosen response wins: the stored readout
    no longer follows from them."""
    judgments_file = RunLayout.judgments_of(RunLayout(sampled_run).eval_metrics("sft", "pairs:hh-rlhf"))
    assert read_json(judgments_file.with_name("sft__pairs-hh-rlhf.json"))["sampled_mean"]["acc"] != 1.0

    def decisive(row):
        score = 9 if row["side"] == "chosen" else 2
        row.update(text=f"<criteria>\n- a: b\n</criteria><score>{score}</score>", score=score, invalid_reason=None)

    _edit_samples(judgments_file, decisive)
    fields = {(d.file, d.field) for d in verify_run(sampled_run).differences}
    assert ("eval/sft__pairs-hh-rlhf.json", "sampled_mean.acc") in fields
    assert not any(file.endswith(".jsonl") for file, _ in fields)  # every sample parses to its score


def test_tables_summary_and_primary_show_the_sampled_mean_where_it_was_measured(sampled_run):
    frame = benchmark_bars_data(sampled_run)
    held_out = frame[frame["bench"] == "pairs:hh-rlhf"].set_index("judge")
    assert held_out.loc["sft", "acc_sampled_mean"] == read_json(
        RunLayout(sampled_run).eval_metrics("sft", "pairs:hh-rlhf"))["sampled_mean"]["acc"]
    assert held_out["acc_sampled_mean"].isna().tolist() == [True, True, False, False]  # length, random: not measured
    plot_benchmark_bars(sampled_run)
    assert list(readout_frame(sampled_run).columns[:9]) == ["judge", "bench", "n", "greedy", "expected", "expected ci95",
                                                          "sampled-mean", "sampled-mean ci95", "sampled-expected"]
    rows = paired_differences(suite_metrics(sampled_run), [["sft", "base"]], 100, 0)
    readouts = ("greedy", "expected", "sampled-mean", "sampled-expected")
    assert [r.get("readout", "greedy") for r in rows] == list(readouts)
    text = render_summary(summary_json(sampled_run))
    assert ("Sampled-mean readout (the mean score of 4 judgments per response sampled at temperature 1.0, top-p 1.0, "
            "each response seeded by itself; judges without it are left out)") in text
    assert "Sampled-expected readout (the mean expected score of 4 judgments per response" in text
    assert text.count("| `sft` |") == 4  # the bench table, the expected-score, sampled-mean and sampled-expected tables
    # The primary comparison may name any readout, and the old name of greedy.
    manifest = json.loads((sampled_run / "manifest.json").read_text())
    for readout, found in (("sampled-mean", "sampled-mean"), ("sampled-expected", "sampled-expected"), ("sampled", "greedy")):
        manifest["config"]["eval"].update(paired=[["sft", "base"]], primary={"a": "sft", "b": "base", "bench": "pairs:hh-rlhf",
                                                                              "readout": readout})
        (sampled_run / "manifest.json").write_text(json.dumps(manifest))
        primary = summary_json(sampled_run)["primary"]
        assert primary["readout"] == found and primary["result"] == rows[readouts.index(found)]
        assert f"held-out hh-rlhf, {found} readout: **" in render_summary(summary_json(sampled_run))


def test_the_learning_curve_reads_every_readout_at_the_rollout_temperature(run_copy, tokenizer, monkeypatch):
    """Step 0 of the curve (no checkpoint yet), judged by a scripted engine: greedy and expected from
    eval.sampling's judgment, sampled-mean and sampled-expected from k judgments sampled as PAR's rollouts;
    verify rebuilds it."""
    from patarm_kit.evaluation import curve  # the module whose model_judge is replaced

    engine = SeededEngine(tokenizer)
    monkeypatch.setattr(curve, "model_judge", lambda config, sampling, adapter=None: Judge(
        tokenizer, engine, config.judge, load_rubrics(), seed=config.seed, sampling=sampling, adapter=adapter))
    config, layout = Run.open(run_copy).config(), RunLayout(run_copy)
    (row,) = curve.learning_curve(config, layout, 3)
    draws = dataclasses.replace(config.par.rollouts, n=config.eval.sampled_mean.n)
    assert engine.blocks == [config.eval.sampling, draws] and draws.temperature == config.par.rollouts.temperature
    stored = read_json(layout.curve_metrics(0))
    assert stored["sampled_mean_sampling"] == dataclasses.asdict(draws) and row == curve_row(stored)
    assert all(row[key] is not None for key in ("acc", "ci95", "acc_expected", "ci95_expected", "acc_sampled_mean",
                                                "ci95_sampled_mean", "acc_sampled_expected", "ci95_sampled_expected"))
    assert len(read_judgments(RunLayout.judgments_of(layout.curve_metrics(0)), SAMPLED_MEAN)) == 3 * 2 * draws.n
    report = verify_run(run_copy)
    assert report.ok and report.checked["metrics files"] == 8, report.summary()  # the suite's 7 and the curve's point
