"""Downstream RLHF: the policy prompts, the rewards a policy trains on, the paired IFEval comparison."""

import json
from pathlib import Path

import pytest

from patarm_kit.config.loader import load_config
from patarm_kit.config.rules import ConfigError
from patarm_kit.config.schema import JudgeConfig, SamplingConfig
from patarm_kit.data import ifcheck
from patarm_kit.data.pairs import DataError
from patarm_kit.data.policy_prompts import policy_prompts, read_policy_prompts, write_policy_prompts
from patarm_kit.data.sources.ifeval import load_ifeval
from patarm_kit.evaluation.downstream import prompt_outcomes
from patarm_kit.judging.engine import Completion
from patarm_kit.judging.judge import Judge
from patarm_kit.judging.models import load_tokenizer
from patarm_kit.judging.rubrics import load_rubrics
from patarm_kit.training.policies import UNSCORED_REWARD, checker_reward, grpo_block, judge_reward, scaled


@pytest.fixture(scope="module")
def config():
    return load_config("smoke", {"policy.n_prompts": 12})


@pytest.fixture(scope="module")
def prompts(config):
    return policy_prompts(config)


def test_policy_prompts_are_training_split_questions_with_a_checkable_instruction(config, prompts):
    assert len(prompts) == 12 and len({p.key for p in prompts}) == 12
    assert policy_prompts(config) == prompts, "a seeded draw"
    ifeval = {p.prompt for p in load_ifeval()[0]}
    for p in prompts:
        assert p.key.startswith("verifiable-if/") and p.prompt not in ifeval
        assert p.prompt.endswith(ifcheck.describe(p.instruction_id, p.kwargs))
    row = prompts[0].to_row("<rendered>")
    assert row["prompt"] == "<rendered>" and row["prompt_text"] == prompts[0].prompt
    assert json.loads(row["kwargs_json"]) == prompts[0].kwargs


def test_stage_one_draws_the_prompts_once_and_stage_six_reads_them_back_checked(config, prompts, tmp_path):
    path = tmp_path / "pairs" / "policy_prompts.jsonl"
    assert write_policy_prompts(config, path) == {"policy_prompts.jsonl": path}
    assert read_policy_prompts(path) == prompts
    assert write_policy_prompts(load_config("smoke", {"policy.rewarders": []}), tmp_path / "none.jsonl") == {}
    rows = path.read_text().splitlines()
    path.write_text("\n".join([rows[0], rows[1].replace('"instruction_id": "', '"instruction_id": "made:up_')]))
    with pytest.raises(DataError, match=r"policy_prompts.jsonl: row 2: field instruction_id: 'made:up_"):
        read_policy_prompts(path)
    with pytest.raises(DataError, match="missing: run notebook 01"):
        read_policy_prompts(tmp_path / "elsewhere.jsonl")


def test_checker_reward_is_the_checkers_strict_verdict(prompts):
    lowercase = next(p for p in policy_prompts(load_config("smoke", {"policy.n_prompts": None}))
                     if p.instruction_id == "change_case:english_lowercase")
    rows = [lowercase.to_row("")] * 2
    completions = ["all lower case here.", "Not Lower."]
    rewards = checker_reward([r["prompt"] for r in rows], completions, [r["instruction_id"] for r in rows],
                             [r["kwargs_json"] for r in rows], [r["prompt_text"] for r in rows])
    assert rewards == [1.0, 0.0]


class ScoresInTurn:
    """An engine whose i-th judgment says <score>scores[i]</score> (None: no score at all)."""

    def __init__(self, scores):
        self.scores, self.calls = list(scores), []

    def generate(self, prompts, sampling, seed, first_index=0, seeds=None):
        self.calls.append((len(prompts), sampling.n))
        texts = iter(self.scores)
        out = []
        for _ in prompts:
            out.append([Completion("<criteria>\n- a: b\n</criteria>" + (f"<score>{s}</score>" if (s := next(texts)) else "no score"),
                                   10, True) for _ in range(sampling.n)])
        self.scores = self.scores[len(prompts) * sampling.n:]
        return out

    def next_token_logprobs(self, prompts, top):
        return [{} for _ in prompts]

    def use_adapter(self, adapter):
        pass


def test_judge_reward_is_the_mean_valid_score_scaled_and_an_unscored_completion_gets_zero():
    tokenizer = load_tokenizer(load_config("smoke").model)
    engine = ScoresInTurn([10, 4, None, None, 7, None])
    judge = Judge(tokenizer, engine, JudgeConfig(), load_rubrics(), sampling=SamplingConfig(n=2, temperature=1.0))
    logged = {}
    reward = judge_reward(judge, "sampled", max_new_tokens=100, length_penalty=0.1)
    rewards = reward(["p"] * 3, ["a", "b", "c"], [[1] * 10, [1] * 50, [1] * 100], ["question"] * 3,
                     log_metric=logged.__setitem__)
    assert engine.calls == [(3, 2)], "k = the judge's n judgments per completion, in one call"
    assert rewards == pytest.approx([scaled(7) - 0.01, UNSCORED_REWARD - 0.05, scaled(7) - 0.1])
    assert logged["judge/unscored_share"] == pytest.approx(1 / 3)
    assert scaled(1) == 0.0 and scaled(10) == 1.0
    strict = judge_reward(judge, "sampled", max_new_tokens=100, format_check=True)
    engine.scores = [9, 9, 9, 9]
    assert strict(["p"] * 2, ["fine", " "], [[1] * 10, [1] * 10], ["q"] * 2) == [scaled(9), 0.0]


def test_the_policy_trainer_reads_the_policy_block_and_one_row_per_prompt(config):
    from patarm_kit.training.grpo import grpo_args

    block = grpo_block(config)
    assert block.par.rollouts == config.policy.rollouts and block.par.max_steps == config.policy.max_steps
    args = grpo_args(block, "/tmp/unused", rows_per_step=config.policy.prompts_per_step)
    assert args.per_device_train_batch_size == config.policy.prompts_per_step * config.policy.rollouts.n
    with pytest.raises(ConfigError, match="policy.rewarders"):
        load_config("smoke", {"policy.rewarders": ["bt"]})


def test_the_policies_have_their_own_grpo_settings_and_never_read_pars():
    base = load_config("smoke")
    par_changed = load_config("smoke", {"par.loss_type": "grpo", "par.beta": 0.1, "par.scale_rewards": "none",
                                        "par.epsilon": 0.3, "par.mask_truncated_completions": True})
    assert grpo_block(par_changed).par == grpo_block(base).par  # PAR's block does not reach the policies
    own = grpo_block(load_config("smoke", {"policy.grpo.loss_type": "grpo", "policy.grpo.beta": 0.1}))
    assert (own.par.loss_type, own.par.beta) == ("grpo", 0.1) and base.par.loss_type == "dapo"
    assert grpo_block(base).par.loss_type == "dapo"  # today's defaults, as PAR's
    assert "grpo" not in base.to_dict()["policy"]  # at its defaults it stays out: older runs keep their fingerprints
    assert load_config("smoke", {"policy.grpo.beta": 0.1}).fingerprint() != base.fingerprint()
    with pytest.raises(ConfigError, match="policy.grpo.loss_type: expected one of dapo, grpo"):
        load_config("smoke", {"policy.grpo.loss_type": "ppo"})
    with pytest.raises(ConfigError, match="policy.grpo.num_iterations: must be at least 1"):
        load_config("smoke", {"policy.grpo.num_iterations": 0})


def test_prompt_outcomes_count_a_prompt_when_every_instruction_passes(tmp_path):
    verdicts = tmp_path / "v.judgments.jsonl"
    verdicts.write_text(json.dumps({"key": 1, "strict": [True, False], "loose": [True, True]}) + "\n"
                        + json.dumps({"key": 2, "strict": [True], "loose": [True]}) + "\n")
    assert prompt_outcomes(verdicts, "strict") == {1: 0.0, 2: 1.0}
    assert prompt_outcomes(verdicts, "loose") == {1: 1.0, 2: 1.0}


@pytest.fixture(scope="module")
def downstream_run(tmp_path_factory):
    """A run whose policies and downstream stages ran, then its figures: the one nbval made (the
    notebooks in numbered order, 05 then 06) when this is `make test`, else a small one made here
    with the checker and the base judge."""
    from patarm_kit import stages
    from patarm_kit.runs.run import Run
    from test_determinism import nbval_smoke_run

    if (made := nbval_smoke_run()) is not None:
        return made
    config = load_config("smoke", {"policy.rewarders": ["checker", "base"], "policy.paired": [["base", "untrained"]],
                                   "policy.ifeval_limit": 3})
    run = Run.create("downstream", config, results_dir=tmp_path_factory.mktemp("runs"))
    stages.data(run)  # the policy prompts
    stages.policies(run)
    stages.downstream(run)
    stages.figures(run)
    return run.dir


@pytest.mark.model
def test_the_downstream_stage_scores_every_policy_and_verify_rebuilds_it(downstream_run, tmp_path):
    import shutil

    from patarm_kit.report.verify import verify_run
    from patarm_kit.runs.files import read_json
    from patarm_kit.runs.layout import RunLayout
    from patarm_kit.runs.run import Run

    layout, config = RunLayout(downstream_run), Run.open(downstream_run).config()
    summary = read_json(layout.downstream_summary)
    assert list(summary["policies"]) == sorted(["untrained", *config.policy.rewarders])
    for policy in summary["policies"]:
        metrics = read_json(layout.ifeval_metrics(policy))
        assert metrics["checker"]["package"] == "if-verifiable" and "punkt" in metrics["checker"]
        assert metrics["generation"]["sampling"]["temperature"] == 0.0 and metrics["n_prompts"] == config.policy.ifeval_limit
        assert metrics["responses_file"]["path"] == f"<run>/downstream/{policy}.responses.jsonl"
    for rewarder in config.policy.rewarders:  # each policy trained on its own rewarder's rewards
        (row,) = [json.loads(line) for line in layout.policy_metrics(rewarder).read_text().splitlines()]
        assert ("rewards/checker_reward/mean" in row) == (rewarder == "checker")
    assert [(p["a"], p["b"]) for p in summary["paired"]][::2] == [tuple(pair) for pair in config.policy.paired]
    assert "## Downstream RLHF: IFEval" in layout.summary.read_text()  # 06 draws the summary after 05
    report = verify_run(downstream_run)
    assert report.ok and report.checked["IFEval policies"] == len(summary["policies"]), report.summary()

    copy = Path(shutil.copytree(downstream_run, tmp_path / "run"))
    verdicts = RunLayout(copy).judgments_of(RunLayout(copy).ifeval_metrics("untrained"))
    rows = [json.loads(line) for line in verdicts.read_text().splitlines()]
    rows[0]["strict"] = [not v for v in rows[0]["strict"]]  # a verdict the checker did not give
    verdicts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "downstream/untrained.judgments.jsonl" in {d.file for d in verify_run(copy).differences}


def test_infobench_reads_its_file_scores_drfr_and_says_when_it_cannot_run(tmp_path, monkeypatch):
    from patarm_kit.data.pairs import DataError
    from patarm_kit.evaluation.infobench import InfoBenchMissing, drfr, evaluator_messages, load_infobench, parse_answer

    with pytest.raises(InfoBenchMissing, match="no InFoBench data: .*infobench has no \\*.jsonl and the hub is off"):
        load_infobench(tmp_path)
    (tmp_path / "infobench").mkdir()
    rows = [{"id": "a", "instruction": "Write a haiku.", "input": "", "decomposed_questions": ["Is it a haiku?", "Is it about snow?"]},
            {"id": "b", "instruction": "Summarise.", "input": "Some text.", "decomposed_questions": ["Is it shorter?"]}]
    (tmp_path / "infobench" / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, source = load_infobench(tmp_path)
    assert [i.id for i in items] == ["a", "b"] and items[1].prompt == "Summarise.\n\nSome text." and "items.jsonl" in source
    conversation = evaluator_messages(items[0], "Snow falls", ["YES"])
    assert [m["role"] for m in conversation] == ["user", "assistant", "user"] and conversation[2]["content"] == "Is it about snow?\n"
    assert 'Generated Text:\n"Snow falls"' in conversation[0]["content"] and "Input:" not in conversation[0]["content"]
    assert [parse_answer(t) for t in ("Yes, it is.", "no", "The answer is YES.", "Either YES or NO", "maybe")] == [True, False, True, None, None]
    assert drfr([[True, False], [None]]) == {"drfr": 1 / 3, "questions": 3, "unanswered": 1, "items": 2}
    (tmp_path / "infobench" / "items.jsonl").write_text(json.dumps({"id": "c", "instruction": "x", "decomposed_questions": []}) + "\n")
    with pytest.raises(DataError, match="items.jsonl: row 1: field decomposed_questions"):
        load_infobench(tmp_path)
