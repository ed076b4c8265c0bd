"""The format warm-up (SFT): its targets, the paper-file mapping, its checks, and one real short run."""

from __future__ import annotations

import json
import statistics

import pytest

from patarm_kit.config.loader import load_config
from patarm_kit.config.schema import ModelConfig
from patarm_kit.evaluation import warmup_checks
from patarm_kit.judging.judge import JudgeRequest, Judgment, prompt_judge
from patarm_kit.judging.prompts import parse_judgment
from patarm_kit.judging.rubrics import load_rubrics
from patarm_kit.training import sft

RUBRICS = load_rubrics()


def request(number: int, side: str = "chosen", task: str = "chat") -> JudgeRequest:
    prompt = ({"role": "user", "content": f"How do I bake sourdough bread at home, attempt {number}?"},)
    return JudgeRequest(f"pair-{number}", side, prompt, f"Answer {number} for the {side} side.", task)


def targets(kind: str, side: str, n: int = 400, seed: int = 0) -> list[tuple[str, int]]:
    return [sft.judgment_target(request(i, side), RUBRICS["chat"], kind, seed) for i in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    from patarm_kit.judging.models import load_tokenizer

    return load_tokenizer(ModelConfig())


# ---------------------------------------------------------------- target builders


@pytest.mark.parametrize("kind", ["format", "facts", "labels"])
@pytest.mark.parametrize("task", ["chat", "math", "code", "safety"])
def test_targets_parse_back_to_the_drawn_score_with_2_to_3_criteria(kind, task):
    for side in ("chosen", "rejected"):
        for i in range(30):
            text, score = sft.judgment_target(request(i, side, task), RUBRICS[task], kind, seed=1)
            parsed = parse_judgment(text)
            assert parsed.score == score
            assert 2 <= len(parsed.criteria) <= 3
            assert "bake sourdough" in text  # criteria and evaluation are about the prompt's topic


def test_targets_are_short(tokenizer):
    lengths = [len(tokenizer(text)["input_ids"]) for text, _ in targets("format", "chosen", n=100)]
    assert max(lengths) <= 80 and 40 <= statistics.fmean(lengths) <= 70


def test_format_scores_are_uniform_whatever_the_side():
    chosen = [score for _, score in targets("format", "chosen")]
    rejected = [score for _, score in targets("format", "rejected")]
    assert set(chosen) == set(rejected) == set(range(1, 11))
    assert abs(statistics.fmean(chosen) - statistics.fmean(rejected)) < 0.5
    assert abs(statistics.fmean(chosen) - 5.5) < 0.5


def test_label_scores_come_from_the_side_bands():
    assert {score for _, score in targets("labels", "chosen")} == set(range(7, 11))
    assert {score for _, score in targets("labels", "rejected")} == set(range(1, 5))


def test_targets_are_seeded_and_independent_of_the_other_pairs(tokenizer):
    assert targets("format", "chosen", n=20, seed=3) == targets("format", "chosen", n=20, seed=3)
    assert targets("format", "chosen", n=20, seed=3) != targets("format", "chosen", n=20, seed=4)
    judge = prompt_judge(load_config("smoke"), tokenizer)
    pairs = [p for p in _pairs(6)]
    forward = {(e.pair_id, e.side): e for e in sft.pair_examples(pairs, judge, "format", seed=0)}
    backward = {(e.pair_id, e.side): e for e in sft.pair_examples(pairs[::-1], judge, "format", seed=0)}
    assert forward == backward


def _pairs(n: int):
    from patarm_kit.data.pairs import PreferencePair

    return [
        PreferencePair(f"p{i}", "test", "chat", request(i).prompt, f"A good answer {i}.", f"A bad answer {i}.")
        for i in range(n)
    ]


def test_examples_use_the_judge_prompt_and_the_loss_covers_only_the_judgment(tokenizer):
    """TRL masks the common prefix of tokenize(prompt) and tokenize(prompt + completion)."""
    judge = prompt_judge(load_config("smoke"), tokenizer)
    pairs = _pairs(3)
    examples = sft.pair_examples(pairs, judge, "format", seed=0)
    assert [(e.pair_id, e.side) for e in examples] == [(p.id, s) for p in pairs for s in ("chosen", "rejected")]
    for example, pair in zip(examples[::2], pairs):
        assert example.prompt == judge.prompt_text(request_for(pair))[0]
        assert example.prompt.endswith("<|im_start|>assistant\n")
        assert example.completion.startswith("<criteria>") and pair.prompt[0]["content"] not in example.completion
        prompt_ids = tokenizer(example.prompt)["input_ids"]
        full_ids = tokenizer(example.prompt + example.completion + tokenizer.eos_token)["input_ids"]
        assert full_ids[: len(prompt_ids)] == prompt_ids
        assert tokenizer.decode(full_ids[len(prompt_ids):]) == example.completion + tokenizer.eos_token


def request_for(pair) -> JudgeRequest:
    return JudgeRequest(pair.id, "chosen", pair.prompt, pair.chosen, pair.task)


# ---------------------------------------------------------------- the paper's SFT file


JUDGMENT = "<criteria>\n- Usefulness: answers it\n</criteria>\n<evaluation>Fine.</evaluation>\n<score>7</score>"


@pytest.mark.parametrize(
    ("row", "messages"),
    [
        (
            {"messages": [{"role": "system", "content": "Judge."}, {"role": "user", "content": "Rate this."},
                          {"role": "assistant", "content": JUDGMENT}]},
            [{"role": "system", "content": "Judge."}, {"role": "user", "content": "Rate this."}],
        ),
        ({"prompt": "Rate this.", "response": JUDGMENT}, [{"role": "user", "content": "Rate this."}]),
        ({"prompt": [{"role": "user", "content": "Rate this."}], "completion": JUDGMENT},
         [{"role": "user", "content": "Rate this."}]),
        ({"instruction": "Rate this.", "output": JUDGMENT}, [{"role": "user", "content": "Rate this."}]),
        ({"instruction": "Rate this.", "input": "The response.", "output": JUDGMENT},
         [{"role": "user", "content": "Rate this.\n\nThe response."}]),
    ],
)
def test_paper_rows_map_to_prompt_messages_and_judgment(row, messages):
    assert sft.paper_example(row) == (messages, JUDGMENT)


def test_paper_rows_in_an_unknown_layout_name_their_columns():
    with pytest.raises(sft.SftError, match=r"columns \['answer', 'question'\].*accepted layouts: messages, prompt\+response"):
        sft.paper_example({"question": "q", "answer": "a"})
    with pytest.raises(sft.SftError, match="must end with the assistant"):
        sft.paper_example({"messages": [{"role": "user", "content": "q"}]})


def test_paper_examples_render_the_chat_template_and_record_parseable_scores(tokenizer):
    rows = [{"prompt": "Rate this.", "response": JUDGMENT}, {"prompt": "Rate that.", "response": "Good, 8/10."}]
    examples = sft.paper_examples(rows, tokenizer, enable_thinking=None)
    assert examples[0].prompt.endswith("Rate this.<|im_end|>\n<|im_start|>assistant\n")
    assert [e.score for e in examples] == [7, None]


def test_paper_targets_offline_fail_with_a_clear_error():
    with pytest.raises(sft.SftError, match=r"sft_train_35.6k.jsonl \(hub repo AIJian/PaTaRM\).*sft.targets=format"):
        sft.load_paper_rows()


def test_a_local_copy_of_the_paper_file_is_read_and_named_with_its_hash(tmp_path):
    from patarm_kit.runs.files import sha256_of

    copy = tmp_path / "sft_train_35.6k.jsonl"
    copy.write_text(json.dumps({"prompt": "Rate this.", "response": JUDGMENT}) + "\n")
    rows, origin = sft.load_paper_rows(local_file=str(copy))
    assert rows == [{"prompt": "Rate this.", "response": JUDGMENT}] and origin == f"{copy} (sha256 {sha256_of(copy)})"
    with pytest.raises(sft.SftError, match=r"sft.paper_file: .*missing.jsonl is not a file"):
        sft.load_paper_rows(local_file=str(tmp_path / "missing.jsonl"))


# ---------------------------------------------------------------- the checks' numbers


def judgments(scores: dict[tuple[str, str], list[int | None]]) -> list[Judgment]:
    return [
        Judgment(pair_id=pair_id, side=side, task="chat", sample=k, text="", score=score,
                 invalid_reason=None if score else "no_score_tag", criteria=[], prompt_tokens=0,
                 completion_tokens=0, truncated=False)
        for (pair_id, side), values in scores.items()
        for k, score in enumerate(values)
    ]


def test_pairwise_accuracy_counts_ties_and_invalid_pairs_apart():
    records = judgments({
        ("win", "chosen"): [8, 9], ("win", "rejected"): [2, 3],
        ("tie", "chosen"): [5, 6], ("tie", "rejected"): [6, 5],
        ("loss", "chosen"): [1, 1], ("loss", "rejected"): [9, None],
        ("invalid", "chosen"): [None, None], ("invalid", "rejected"): [4, 4],
    })
    result = warmup_checks.pairwise_accuracy(records, ["win", "tie", "loss", "invalid"], n_boot=200, seed=0)
    assert result["accuracy"] == (1 + 0.5 + 0 + 0.5) / 4
    assert (result["win"], result["tie"], result["loss"], result["invalid"]) == (1, 1, 1, 1)
    assert 0 <= result["ci95"][0] <= result["accuracy"] <= result["ci95"][1] <= 1


def test_all_equal_groups_are_the_groups_without_reward_variance():
    records = judgments({
        ("a", "chosen"): [8, 2, 9, 7], ("a", "rejected"): [3, 3, 3, 3],  # chosen rewards 1,0,1,1; rejected 1,1,1,1
        ("b", "chosen"): [None] * 4, ("b", "rejected"): [5, 6, 7, 8],  # no valid chosen: everything earns 0
    })
    assert warmup_checks.all_equal_groups(records, ["a", "b"], "binary") == {"groups": 4, "all_equal": 3, "share": 0.75}


def test_score_histogram_counts_valid_scores_of_one_side():
    records = judgments({("a", "chosen"): [8, 8, None], ("a", "rejected"): [1, 2, 3]})
    assert warmup_checks.score_histogram(records, "chosen") == {**{s: 0 for s in range(1, 11)}, 8: 2}


# ---------------------------------------------------------------- a real short run


@pytest.mark.slow
@pytest.mark.model
def test_a_short_real_sft_run_lowers_the_loss_and_its_adapter_reloads(tmp_path):
    from peft import PeftModel

    from patarm_kit import stages
    from patarm_kit.judging.models import load_model
    from patarm_kit.runs.files import read_json
    from patarm_kit.runs.run import Run

    config = load_config("smoke", {  # short prompts and few tokens keep this under a minute on 2 cores
        "sft.n_pairs": 2, "sft.max_steps": 4, "sft.batch_size": 2, "sft.learning_rate": 0.002,
        "judge.max_prompt_tokens": 48, "judge.max_response_tokens": 32,
        "sft.n_check_pairs": 1, "sft.checks.n": 2, "sft.checks.max_new_tokens": 12,
    })
    run = Run.create("sft-test", config, results_dir=tmp_path)
    stages.data(run)  # the warm-up reads stage 01's pairs/train.jsonl, and nothing else
    result = sft.run_sft(config, run)
    assert result.steps == 4 and result.final_loss < result.losses[0]
    adapter = result.adapter_dir
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "README.md"):
        assert (adapter / name).is_file()
    assert "PAR training (GRPO) starts from it" in (adapter / "README.md").read_text()
    model, _ = load_model(config.model, adapter=adapter)
    assert isinstance(model, PeftModel)
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    stage = result.facts  # what the sft stage records in the manifest
    assert stage["base_model"] == "smollm2-135m-instruct" and stage["steps"] == 4 and stage["data"]["examples"] == 4

    checks = warmup_checks.warmup_checks(config, run, adapter)
    assert set(checks["judges"]) == {"base", "sft"}
    # JSON turns the score histograms' integer keys into strings; compare what JSON keeps.
    assert read_json(run.dir / "sft" / "checks.json") == json.loads(json.dumps(checks))
    records = (run.dir / "sft" / "check_judgments.jsonl").read_text().splitlines()
    assert len(records) == 2 * 2 * 2  # 2 judges x 2 sides x 2 samples


def test_cli_sft_with_paper_targets_offline_exits_with_the_clear_error(tmp_path):
    from typer.testing import CliRunner

    from patarm_kit.cli import app

    args = ["sft", "--profile", "smoke", "--run-dir", str(tmp_path / "run"), "--set", "sft.targets=paper"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "needs a hub connection" in result.output


# ---------------------------------------------------------------- facts targets: the warm-up reads the response


def _built_pair(chosen: str, rejected: str):
    from patarm_kit.data.pairs import PreferencePair

    return PreferencePair(
        "verifiable-if/hh/1/keywords:existence", "verifiable-if", "instruction",
        ({"role": "user", "content": "How do I keep basil alive?\n\nInclude keywords walnut, lantern in the response."},),
        chosen, rejected, subset="keywords:existence", split_key="verifiable-if/How do I keep basil alive?",
        instructions=({"instruction_id": "keywords:existence", "kwargs": {"keywords": ["walnut", "lantern"]}},),
    )


def _facts_targets(pair, kind: str = "facts") -> dict[str, str]:
    from patarm_kit.judging.judge import requests_for_pairs

    return {r.response: sft.judgment_target(r, RUBRICS[r.task], kind, 0, pair.instructions)[0] for r in requests_for_pairs([pair])}


def test_a_facts_target_changes_with_the_response_and_not_with_the_label():
    follows = "Water it daily. This also touches on walnut and lantern."
    ignores = "Water it daily. This also touches on meadow and violin."
    targets = _facts_targets(_built_pair(follows, ignores))
    assert targets == _facts_targets(_built_pair(ignores, follows))  # the label flipped: the same judgment of each response
    assert targets[follows] != targets[ignores]
    assert 'has walnut: yes; has lantern: yes' in targets[follows]
    assert 'has walnut: no; has lantern: no' in targets[ignores]
    assert "Constraint followed: use walnut and lantern" in targets[follows]
    assert 'ends: "... touches on walnut and lantern."; has walnut' in targets[follows]  # the evidence, then the verdict
    half = follows.replace(" and lantern", "")  # one keyword edited out: that fact, and only that one, changes
    assert 'has walnut: yes; has lantern: no' in _facts_targets(_built_pair(half, ignores))[half]
    labels = _facts_targets(_built_pair(follows, ignores), "labels")
    assert parse_judgment(labels[follows]).score >= 7 and parse_judgment(labels[ignores]).score <= 4


@pytest.fixture(scope="module")
def verifiable_pairs(data_dir) -> dict[str, list]:
    """The real verifiable pairs of both built sources, built once for the module."""
    from patarm_kit.data.loading import load_source

    return {name: load_source(name, data_dir, {"train": 0.8, "dev": 0.1, "test": 0.1})[0]
            for name in ("verifiable-if", "verifiable-if-transfer")}


@pytest.mark.parametrize("instruction_id", sorted(sft.facts.INSTRUCTION_FACTS))
def test_every_instruction_type_has_a_fact_of_the_response(instruction_id, verifiable_pairs):
    """Built on the real verifiable pairs: each type's fact differs between the two sides of most pairs."""
    pairs = [pair for built in verifiable_pairs.values() for pair in [p for p in built if p.subset == instruction_id][:40]]  # 40 a source
    assert pairs
    differ = 0
    for pair in pairs:
        (kwargs,) = [i["kwargs"] for i in pair.instructions]
        chosen, rejected = (sft.facts.INSTRUCTION_FACTS[instruction_id][1](side, kwargs) for side in (pair.chosen, pair.rejected))
        differ += chosen != rejected
    assert differ >= 0.9 * len(pairs)


def test_facts_targets_fit_the_rollout_budget(tokenizer, verifiable_pairs):
    from patarm_kit.judging.judge import requests_for_pairs

    pairs = verifiable_pairs["verifiable-if"][:200]
    instructions = {p.id: p.instructions for p in pairs}
    lengths = [len(tokenizer(sft.judgment_target(r, RUBRICS[r.task], "facts", 0, instructions[r.pair_id])[0])["input_ids"])
               for r in requests_for_pairs(pairs)]
    assert max(lengths) <= load_config("cpu").par.rollouts.max_new_tokens - 8


def test_facts_report_counts_each_keyword_verdict_and_leaves_quotes_out_of_verdicts():
    from patarm_kit.judging.judge import Judgment

    follows = "Water it daily. This also touches on walnut and lantern."
    pair = _built_pair(follows, "Water it daily. This also touches on meadow and violin.")
    text = ('<criteria>\n- Constraint followed: use walnut and lantern\n</criteria>\n'
            '<evaluation>ends: "... touches on walnut and lantern."; has walnut: yes; has lantern: no.</evaluation>\n<score>6</score>')
    judgment = Judgment(pair.id, "chosen", "instruction", 0, text, 6, None, [], 300, 40, False)
    report = warmup_checks.facts_report([judgment], [pair])
    assert report["verdicts_stated"] == 0.5  # one of the two keyword verdicts right
    assert report["facts_stated"] == 2 / 3 and report["all_facts_stated"] == 0.0  # the quote counts among the facts
    assert report["verdicts_by_instruction"] == {"keywords:existence": {"judgments": 1, "verdicts_stated": 0.5}}


def test_score_by_stated_side_reads_what_a_judgment_says_not_which_response_it_judges():
    from patarm_kit.judging.judge import Judgment

    pair = _built_pair("Water it daily. This also touches on walnut and lantern.", "Water it daily. This also touches on meadow and violin.")

    def judged(side: str, verdicts: str, score: int) -> Judgment:
        text = f"<criteria>\n- Constraint followed: use walnut and lantern\n</criteria>\n<evaluation>{verdicts}.</evaluation>\n<score>{score}</score>"
        return Judgment(pair.id, side, "instruction", 0, text, score, None, [], 300, 40, False)

    judgments = [judged("chosen", "has walnut: yes; has lantern: yes", 9),
                 judged("rejected", "has walnut: yes; has lantern: yes", 7),  # misread: it states the chosen side's verdicts
                 judged("rejected", "has walnut: no; has lantern: no", 2),
                 judged("chosen", "has walnut: yes; has lantern: no", 10)]  # neither side's verdicts wholly: left out
    gaps = warmup_checks.score_by_stated_side(judgments, [pair])
    assert (gaps["n_chosen_facts"], gaps["n_rejected_facts"]) == (2, 1)
    assert gaps["score_chosen_facts"] == 8.0 and gaps["score_rejected_facts"] == 2.0 and gaps["score_gap"] == 6.0
