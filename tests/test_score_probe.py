"""The score-reading probe: PAR's reward on the score alone, on the real model and the control's real pairs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from patarm_kit import stages
from patarm_kit.cli import app
from patarm_kit.config.loader import load_config
from patarm_kit.data.pairs import PreferencePair, read_pairs
from patarm_kit.judging.models import load_tokenizer
from patarm_kit.runs.run import Run
from patarm_kit.training import score_probe


def _keyword_pair() -> PreferencePair:
    return PreferencePair(
        "verifiable-if/hh/1/keywords:existence", "verifiable-if", "instruction",
        ({"role": "user", "content": "How do I keep basil alive?\n\nInclude keywords walnut, lantern in the response."},),
        "Water it daily. This also touches on walnut and lantern.", "Water it daily. This also touches on meadow and violin.",
        subset="keywords:existence", split_key="verifiable-if/How do I keep basil alive?",
        instructions=({"instruction_id": "keywords:existence", "kwargs": {"keywords": ["walnut", "lantern"]}},),
    )


def test_each_side_is_the_warm_up_judgment_cut_at_the_score_tag_with_its_own_verdicts():
    config = load_config("cpu-par-control")
    chosen, rejected = score_probe.verdict_prefixes(config, [_keyword_pair()], load_tokenizer(config.model))
    assert (chosen.side, rejected.side) == ("chosen", "rejected")
    assert chosen.text.endswith("has walnut: yes; has lantern: yes.</evaluation>\n<score>")
    assert rejected.text.endswith("has walnut: no; has lantern: no.</evaluation>\n<score>")
    assert "Include keywords walnut, lantern" in chosen.text  # the judge prompt comes first


def test_advantages_are_par_rewards_minus_the_side_mean():
    chosen, rejected = score_probe.group_advantages([8, 2, 5, 5], [3, 5, 3, 5])  # means: chosen 5, rejected 4
    assert chosen == [0.25, -0.75, 0.25, 0.25]  # above the rejected mean earns 1
    assert rejected == [0.5, -0.5, 0.5, -0.5]  # below the chosen mean earns 1


def test_a_bad_layers_value_is_one_line_and_creates_no_run(tmp_path):
    result = CliRunner().invoke(app, ["probe-score", "--run-dir", str(tmp_path / "probe"), "--layers", "0"])
    assert result.exit_code == 2 and "error: --layers takes a positive number of layers or 'all', not '0'" in result.output
    assert not (tmp_path / "probe").exists()


@pytest.mark.slow
def test_with_lora_in_every_layer_par_s_reward_teaches_the_score_to_follow_the_verdicts(tmp_path):
    """The positive control's mechanism in ~4 min: a fresh adapter scores both sides alike
    (teacher-forced gap ~0); 60 steps of PAR's reward on the score make chosen's higher on dev."""
    run = Run.create("probe", load_config("cpu-par-control", {"sft.enabled": False}), tmp_path)
    stages.data(run)
    curves = stages.score_probe(run, [None], steps=60, learning_rate=1e-4, read_every=30)
    curve = curves["all"]
    assert [p["step"] for p in curve] == [0, 30, 60]
    assert abs(curve[0]["score_gap"]) < 0.2 and curve[0]["pairs"] == len(read_pairs(run.layout.pairs("dev")))
    assert curve[-1]["accuracy"] >= 0.9 and curve[-1]["score_gap"] > 1.0
    assert json.loads(run.layout.score_probe.read_text())["trainable_layers"]["all"] == curve
    assert run.layout.figure("score_probe").is_file() and run.stage_done("score_probe")
