"""Benchmarks end to end on the real local data with the model-free judges; recomputation; pairwise logic."""

import json

import pytest
from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.config import JudgeConfig, ModelConfig, load_config
from patarm_kit.data import SourceConfig, load_source, split_of
from patarm_kit.evaluate import (
    EvalError,
    evaluate,
    load_bench,
    paired_difference,
    recompute_metrics,
    recorded_spec,
    resolve_judge,
    summary_row,
)
from patarm_kit.judge import Completion, Judge
from patarm_kit.models import load_tokenizer
from patarm_kit.rubrics import load_rubrics


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
    items = load_bench("pairs:hh-rlhf", config, limit=None)
    pairs, _ = load_source(SourceConfig("hh-rlhf", bad_rows="skip"), data_dir)
    test = [p for p in pairs if split_of(p, config.data.split_fractions) == "test"]
    assert {p.id for p in items.pairs} == {p.id for p in test}


def test_limit_is_per_group(config):
    items = load_bench("rmbench", config, limit=5)
    assert sorted(items.groups.values()).count("safety") == 5 and len(items.pairs) == 15
    with pytest.raises(EvalError, match="at least 1"):
        load_bench("rmbench", config, limit=0)


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
    assert resolve_judge("par", tmp_path) == f"adapter:{tmp_path}/par/adapter"
    assert resolve_judge("length", tmp_path) == "length"


def test_metrics_name_the_run_s_own_models_relative_to_the_run(tmp_path):
    out = tmp_path / "run" / "eval" / "par__rmbench.json"
    assert recorded_spec(resolve_judge("par", tmp_path / "run"), out) == "adapter:<run>/par/adapter"
    assert recorded_spec("bt:/elsewhere/bt/adapter", out) == "bt:/elsewhere/bt/adapter"
    assert recorded_spec("pairwise", out) == "pairwise"


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


class VerdictBackend:
    """Always answers A: a maximally position-biased pairwise judge."""

    def generate(self, prompts, n, seed):
        return [[Completion("<criteria>\n- x: y\n</criteria><evaluation>ok</evaluation><verdict>A</verdict>", 5, True)] for _ in prompts]


def test_pairwise_judge_cancels_position_bias(config, data_dir):
    pairs = load_source("llmbar", data_dir)[0][:4]
    judge = Judge(load_tokenizer(ModelConfig()), VerdictBackend(), JudgeConfig(batch_size=3), load_rubrics())
    judgments = judge.judge_pairwise(pairs, progress=False)
    assert [j.side for j in judgments[:2]] == ["AB", "BA"]
    assert [j.score for j in judgments[:2]] == [1.0, 0.0], "always-A is right in one order and wrong in the other"
    from patarm_kit.evaluate import compute_metrics

    metrics = compute_metrics("rewardbench", judgments, {p.id: "llmbar-natural" for p in pairs}, "half", pairwise=True, n_boot=50)
    assert metrics["acc"] == 0.5
