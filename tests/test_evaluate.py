"""Benchmarks end to end on the real local data with the model-free judges; recomputation; pairwise logic."""

import json

import pytest
from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.config.loader import load_config
from patarm_kit.config.rules import ConfigError
from patarm_kit.config.schema import JudgeConfig, ModelConfig, SourceConfig
from patarm_kit.data.loading import load_source
from patarm_kit.data.splits import split_of
from patarm_kit.evaluation.benches import get_bench
from patarm_kit.evaluation.evaluate import (
    compute_metrics,
    evaluate,
    paired_difference,
    recompute_metrics,
    suite_plan,
    summary_row,
)
from patarm_kit.judging.engine import Completion
from patarm_kit.judging.judge import EvalError, Judge, Judgment
from patarm_kit.judging.models import load_tokenizer
from patarm_kit.judging.registry import parse_judge
from patarm_kit.judging.rubrics import load_rubrics
from patarm_kit.runs.layout import RunLayout


@pytest.fixture(scope="module")
def config():
    return load_config("cpu", {"eval.n_boot": 200})


def test_length_judge_shows_rmbench_style_bias(config, tmp_path):
    metrics = evaluate(config, "length", "rmbench", tmp_path / "len.json", limit=None, ties="zero")
    assert set(metrics["domains"]) == {"chat", "code", "safety"} and metrics["domains_missing"] == ["math"]
    assert [metrics["domains"][d]["n"] for d in ("chat", "code", "safety")] == [129, 228, 441]
    overall = metrics["overall"]
    assert overall["hard"] < 0.2 < 0.7 < overall["easy"], "a length judge prefers the longer, fancier answer"
    assert metrics["ties"] == "zero" and metrics["invalid"]["judgments"] == 0
    assert all(0.0 <= v <= 1.0 for d in metrics["domains"].values() for v in (d["easy"], d["normal"], d["hard"], d["avg"]))
    low, high = metrics["ci95"]["acc"]
    assert low < metrics["acc"] < high
    assert (tmp_path / "len.judgments.jsonl").stat().st_size > 0
    assert metrics["data_files"]["rm-bench/chat_filtered.json"].startswith("1df6053a")


def test_metrics_recompute_from_stored_judgments(config, tmp_path):
    stored = evaluate(config, "random", "rewardbench", tmp_path / "rb.json", limit=20)
    again = recompute_metrics(tmp_path / "rb.json")
    for key in ("acc", "ci95", "subsets", "sections", "score", "items", "invalid"):
        assert again[key] == stored[key]


def test_rewardbench_llmbar_is_reported_partial(config, tmp_path):
    metrics = evaluate(config, "length", "rewardbench", tmp_path / "rb.json", limit=None)
    assert {s: f["n"] for s, f in metrics["subsets"].items()} == {
        "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
        "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    }
    chat_hard = metrics["sections"]["Chat Hard"]
    assert chat_hard["complete"] is False and chat_hard["missing"] == ["mt-bench-hard"]
    assert metrics["sections"]["Chat"]["score"] is None and metrics["score"] is None
    assert chat_hard["ci95"][0] <= chat_hard["score"] <= chat_hard["ci95"][1]


def test_held_out_pairs_use_only_the_test_split(config, data_dir):
    items = get_bench("pairs:hh-rlhf").load(config, limit=None)
    pairs, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip"), data_dir)
    test = [p for p in pairs if split_of(p, config.data.split_fractions) == "test"]
    assert {p.id for p in items.pairs} == {p.id for p in test}


def test_limit_is_per_group(config):
    items = get_bench("rmbench").load(config, limit=5)
    assert sorted(items.groups.values()).count("safety") == 5 and len(items.pairs) == 15
    with pytest.raises(EvalError, match="at least 1"):
        get_bench("rmbench").load(config, limit=0)


def test_paired_difference_and_table_rows(config, tmp_path):
    length = evaluate(config, "length", "pairs:hh-rlhf", tmp_path / "a.json", limit=200)
    rand = evaluate(config, "random", "pairs:hh-rlhf", tmp_path / "b.json", limit=200)
    same = paired_difference(length, length)
    assert same["diff"] == 0 and same["lo"] == same["hi"] == 0
    diff = paired_difference(length, rand)
    assert diff["n"] == 200 and diff["lo"] <= diff["diff"] <= diff["hi"]
    assert diff["diff"] == pytest.approx(length["acc"] - rand["acc"])
    row = summary_row(length)
    assert row["n"] == 200 and row["ci95_low"] <= row["acc"] <= row["ci95_high"]


def test_tie_policy_changes_length_ties_only_when_equal(config, tmp_path):
    zero = evaluate(config, "length", "rmbench", tmp_path / "z.json", limit=30, ties="zero")
    half = evaluate(config, "length", "rmbench", tmp_path / "h.json", limit=30, ties="half")
    assert half["acc"] >= zero["acc"] and half["ties"] == "half"


def test_judge_aliases_point_into_the_run(tmp_path):
    layout = RunLayout(tmp_path / "run")
    par = parse_judge("par", layout)
    assert (par.kind, par.path, par.label) == ("adapter", str(layout.par_adapter), "par")
    assert parse_judge("bt", layout).kind == "bt" and parse_judge("length", layout).path is None
    with pytest.raises(EvalError, match="judge 'par' is a run's own judge: outside a run, name it adapter:PATH"):
        parse_judge("par")


def test_metrics_name_the_run_s_own_models_relative_to_the_run(tmp_path):
    layout = RunLayout(tmp_path / "run")
    assert parse_judge("par", layout).recorded == "adapter:<run>/par/adapter"
    assert parse_judge(f"bt:{layout.bt_adapter}", layout).recorded == "bt:<run>/bt/adapter"
    assert parse_judge("bt:/elsewhere/bt/adapter", layout).recorded == "bt:/elsewhere/bt/adapter"
    assert parse_judge("pairwise", layout).recorded == "pairwise"


def test_stored_judge_specs_still_read():
    """Metrics files record the run's own models as <run>/...; recomputation reads them back."""
    assert parse_judge("adapter:<run>/par/adapter").kind == "adapter"
    assert parse_judge("bt:<run>/bt/adapter").kind == "bt" and parse_judge("pairwise").pairwise


def test_the_suite_plans_every_judge_on_every_bench_but_pairwise_on_rmbench(tmp_path):
    config = load_config("cpu")
    layout = RunLayout(tmp_path)
    plan = suite_plan(config, layout)
    assert len(plan) == len(config.eval.judges) * len(config.eval.benches) - 1
    assert ("pairwise", "rmbench", layout.eval_metrics("pairwise", "rmbench")) not in plan
    assert ("par", "pairs:hh-rlhf", tmp_path / "eval" / "par__pairs-hh-rlhf.json") in plan


def test_zero_judgments_never_make_a_metric(config, tmp_path):
    groups = {"p1": "llmbar-natural"}
    with pytest.raises(EvalError, match="no judgments to score"):
        compute_metrics("rewardbench", [], groups, "half")
    judged = [Judgment("p1", side, "chat", 0, "", 1.0, None, [], 0, 0, False) for side in ("chosen", "rejected")]
    with pytest.raises(EvalError, match="votes must be at least 1, not 0"):
        compute_metrics("rewardbench", judged, groups, "half", votes=0)
    with pytest.raises(EvalError, match="1 of 2 items have no judgments"):
        compute_metrics("rewardbench", judged, {**groups, "p2": "llmbar-natural"}, "half")
    for votes, message in ((-1, "votes must be at least 1, not -1"), (4, "judge length makes one judgment per response")):
        with pytest.raises(EvalError, match=message):
            evaluate(config, "length", "rewardbench", tmp_path / "out" / "x.json", limit=1, votes=votes)
    with pytest.raises(ConfigError, match="eval.sampling with votes=4: n=4 judgments per response need temperature > 0"):
        evaluate(config, "base", "rewardbench", tmp_path / "out" / "x.json", limit=1, votes=4)
    with pytest.raises(EvalError, match="the pairwise judge is not run on rmbench"):
        evaluate(config, "pairwise", "rmbench", tmp_path / "out" / "x.json", limit=1)
    assert not (tmp_path / "out").exists(), "every refusal comes before anything is written"


def test_cli_rejects_unknown_judges_and_benches(tmp_path):
    runner = CliRunner()
    bad_judge = runner.invoke(app, ["eval", "--judge", "oracle", "--bench", "rmbench", "--out", str(tmp_path / "x.json")])
    assert bad_judge.exit_code == 2 and "judge 'oracle'" in bad_judge.output
    bad_bench = runner.invoke(app, ["eval", "--judge", "length", "--bench", "mmlu", "--out", str(tmp_path / "x.json")])
    assert bad_bench.exit_code == 2 and "bench 'mmlu'" in bad_bench.output
    ok = runner.invoke(app, ["eval", "--judge", "length", "--bench", "rmbench", "--ties", "zero", "--limit", "all",
                             "--out", str(tmp_path / "len.json")])
    assert ok.exit_code == 0 and "hard" in ok.output
    assert json.loads((tmp_path / "len.json").read_text())["ties"] == "zero"


class VerdictEngine:
    """Always answers A: a maximally position-biased pairwise judge."""

    def generate(self, prompts, sampling, seed, first_index=0, seeds=None):
        assert sampling.n == 1, "a pairwise judge makes one verdict per order"
        return [[Completion("<criteria>\n- x: y\n</criteria><evaluation>ok</evaluation><verdict>A</verdict>", 5, True)] for _ in prompts]

    def use_adapter(self, adapter):
        assert adapter is None

    def settings(self):
        return {"engine": "scripted"}

    def close(self):
        pass


def test_pairwise_judge_cancels_position_bias(config, data_dir):
    pairs = load_source("llmbar", data_dir)[0][:4]
    judge = Judge(load_tokenizer(ModelConfig()), VerdictEngine(), JudgeConfig(batch_size=3), load_rubrics())
    judgments = judge.judge_pairwise(pairs)
    assert [j.side for j in judgments[:2]] == ["AB", "BA"]
    assert [j.score for j in judgments[:2]] == [1.0, 0.0], "always-A is right in one order and wrong in the other"
    metrics = compute_metrics("rewardbench", judgments, {p.id: "llmbar-natural" for p in pairs}, "half", pairwise=True, n_boot=50)
    assert metrics["acc"] == 0.5


def test_pairwise_judgments_record_which_inputs_were_cut(data_dir):
    pairs = load_source("llmbar", data_dir)[0][:2]
    judge = Judge(load_tokenizer(ModelConfig()), VerdictEngine(), JudgeConfig(max_response_tokens=3), load_rubrics())
    judgments = judge.judge_pairwise(pairs)
    assert [j.input_truncated for j in judgments] == [["response"]] * 4  # both responses of both pairs, both orders
    roomy = Judge(load_tokenizer(ModelConfig()), VerdictEngine(), JudgeConfig(max_response_tokens=4096), load_rubrics())
    assert [j.input_truncated for j in roomy.judge_pairwise(pairs)] == [[]] * 4
