"""RewardBench 2: golden tests of its scoring rules (hand-computed) and `patarm-kit eval` on a local mirror."""

import json
import math

import pytest
from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.data.loading import load_source
from patarm_kit.data.pairs import DataError
from patarm_kit.evaluation.benches.rewardbench2 import best_of_4, ties_prompts, ties_score

runner = CliRunner()


def test_best_of_4_pays_one_over_the_number_of_top_responses():
    assert best_of_4(9, [5, 3, 1]) == 1.0  # a clean win
    assert best_of_4(9, [9, 3, 1]) == 0.5 and best_of_4(9, [9, 9, 1]) == pytest.approx(1 / 3)  # tied at the top
    assert best_of_4(5, [9, 3, 1]) == 0.0
    assert best_of_4(None, [None, None, None]) == 0.25  # nothing rated: chance, as the official runner
    assert best_of_4(None, [4, None, None]) == 0.0  # an unrated correct response is not a winner
    assert best_of_4(9, [None, None, None]) == 1.0
    assert best_of_4(9, [9, 3, 1], ties="zero") == 0.0 and best_of_4(None, [None] * 3, ties="zero") == 0.0  # strict


def test_ties_score_follows_the_official_terms_and_weights():
    rows = [("ref:1", [9], [5, 3]), ("tied:1", [9, 8], [5]),  # accurate; margins 4 and 3; spread 1
            ("ref:2", [4], [6]), ("tied:2", [7, 3], [5])]  # both wrong; margins -2 and -2; spread 4
    terms = ties_score(ties_prompts(rows))
    assert terms["ref_accuracy"] == 0.5 and terms["tied_accuracy"] == 0.5
    assert terms["correctness_preferred"] == 0.5 and terms["correctness_preferred_hard"] == 0.5  # 3 > 1; -2 < 4
    tie_breaker = (math.tanh(3 / 1 - 1) + math.tanh(-2 / 4 - 1)) / 2
    assert terms["correctness_margin_score"] == pytest.approx(tie_breaker)
    assert terms["score"] == pytest.approx(0.3 * 0.5 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0.5 + 0.01 * tie_breaker)
    assert ties_score(ties_prompts(rows[:1]))["score"] is None  # the margins need a prompt's ref and tied rows


def row(identity, subset, chosen, rejected):
    return {"id": identity, "prompt": f"Question {identity}?", "chosen": chosen, "rejected": rejected,
            "num_correct": len(chosen), "total_completions": len(chosen) + len(rejected), "subset": subset}


# Lengths decide the `length` judge: each best-of-4 row's outcome is known by hand.
MIRROR = [
    row(1, "Factuality", ["a long correct answer"], ["short", "tiny", "wee"]),  # 1
    row(2, "Factuality", ["short"], ["a much longer wrong one", "tiny", "wee"]),  # 0
    row(3, "Focus", ["equal"], ["same!", "tiny", "wee"]),  # tied with one: 1/2
    row(4, "Math", ["twelve"], ["eleven", "ten", "six"]),  # tied with one: 1/2
    row(5, "Precise IF", ["the longest one"], ["mid one", "short", "s"]),  # 1
    row(6, "Safety", ["no"], ["yes, here is how", "sure", "ok"]),  # 0
    row("ref:7", "Ties", ["a right answer"], ["wrong"]),  # accurate, margin 14 - 5 = 9
    row("tied:7", "Ties", ["right answer one", "right two"], ["wrong"]),  # accurate, margin 9 - 5 = 4, spread 7
]


def test_eval_scores_a_local_mirror_with_the_length_judge(tmp_path, data_dir):
    (tmp_path / "reward-bench-2").mkdir()
    (tmp_path / "reward-bench-2" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MIRROR))
    out = tmp_path / "rb2.json"
    result = runner.invoke(app, ["eval", "--judge", "length", "--bench", "rewardbench2", "--data-dir", str(tmp_path),
                                 "--limit", "all", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    scores = {name: facts["score"] for name, facts in metrics["subsets"].items()}
    ties = 0.3 + 0.3 + 0.2 * (4 > 7) + 0.2 * (4 > 7) + 0.01 * math.tanh(min(9, 4) / 7 - 1)
    assert scores == pytest.approx({"Factuality": 0.5, "Focus": 0.5, "Math": 0.5, "Precise IF": 1.0, "Safety": 0.0, "Ties": ties})
    assert metrics["acc"] == pytest.approx((0.5 + 0.5 + 0.5 + 1.0 + 0.0 + ties) / 6) and metrics["subsets_missing"] == []
    assert result.output.startswith("length on rewardbench2") and "  Ties " in result.output


def test_a_malformed_mirror_row_is_refused_naming_the_row(tmp_path):
    (tmp_path / "reward-bench-2").mkdir()
    bad = [MIRROR[0], {**MIRROR[1], "num_correct": 2}]
    (tmp_path / "reward-bench-2" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(DataError, match=r"test.jsonl: row 2: field num_correct: expected 1"):
        load_source("reward-bench-2", tmp_path)
    bad = [{**MIRROR[6], "id": "7"}]
    (tmp_path / "reward-bench-2" / "test.jsonl").write_text(json.dumps(bad[0]) + "\n")
    with pytest.raises(DataError, match=r"row 1: field id: a Ties row's id is ref:<n> or tied:<n>"):
        load_source("reward-bench-2", tmp_path)
