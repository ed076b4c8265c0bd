"""IFEval scoring of given responses: the kit's verdicts are the wrapped implementation's, strict and loose."""

import json

import pytest
from if_verifiable import IFEvalSample, evaluate_output_for_sample
from typer.testing import CliRunner

from patarm_kit.cli import app
from patarm_kit.data.sources.ifeval import load_ifeval
from patarm_kit.evaluation.ifeval import OFFICIAL, score_verdicts, verdict_rows


@pytest.fixture(scope="module")
def prompts(data_dir):
    return {p.key: p for p in load_ifeval(data_dir)[0]}


def hand_written(prompts):
    """Responses written by hand for the first 12 prompts: some follow, some break their instructions."""
    keys = sorted(prompts)[:12]
    texts = ["I LOVE THIS, IT IS FINE.", "all lower case words here", "<<A Title>>\n* one\n* two\n* three",
             '"Quoted from start to end."', "**Intro**\nSection 1\nbody\nSection 2\nmore body\nP.S. bye",
             "", "Short.", "word " * 400, '{"answer": "json"}', "Hello, world. This has commas, many, many.",
             "<think>plan the answer</think>All lowercase after thinking", "End phrase test. Is there anything else I can help with?"]
    return dict(zip(keys, texts))


def test_verdicts_equal_the_wrapped_implementation_strict_and_loose(prompts):
    responses = hand_written(prompts)
    rows = verdict_rows(list(prompts.values()), responses)
    assert len(rows) == len(responses)
    for row in rows:
        prompt = prompts[row["key"]]
        sample = IFEvalSample(prompt.key, prompt.prompt, list(prompt.instruction_id_list), [dict(k) for k in prompt.kwargs])
        results, scores = evaluate_output_for_sample("ifeval", sample, responses[row["key"]])
        if results:
            assert row["strict"] == [r.strict_pass for r in results] and row["loose"] == [r.loose_pass for r in results]
        assert float(all(row["strict"])) == scores.binary_strict and float(all(row["loose"])) == scores.binary_loose
    verdicts = [v for row in rows for v in row["strict"]]
    assert True in verdicts and False in verdicts  # the hand-written set exercises both outcomes


def test_a_verdict_depends_on_the_response_alone(prompts):
    """IFEval's letter-frequency checker draws a random letter when the prompt counts "#" (key
    1122): the kit seeds each check, so the verdict never changes from run to run, it is the
    wrapped implementation's under that seed, and the caller's random state is left as it was."""
    import random

    from patarm_kit.data import ifcheck

    prompt = prompts[1122]
    assert prompt.kwargs[1]["letter"] == "#"
    response = "abcdefghijklmnopqrstuvwxyz " * 3 + "#one #two #three #four"
    verdicts = set()
    for seed in range(30):
        random.seed(seed)
        before = random.getstate()
        verdicts.add(tuple(ifcheck.check(response, prompt.instruction_id_list, prompt.kwargs, prompt.prompt)))
        assert random.getstate() == before
    assert len(verdicts) == 1
    random.seed(ifcheck.CHECKER_RANDOM_SEED)
    sample = IFEvalSample(prompt.key, prompt.prompt, list(prompt.instruction_id_list), [dict(k) for k in prompt.kwargs])
    results, _ = evaluate_output_for_sample("ifeval", sample, response)
    assert [v.strict for v in verdicts.pop()] == [r.strict_pass for r in results]


def test_the_four_numbers_from_verdicts():
    rows = [{"key": 1, "instruction_id_list": ["a", "b"], "strict": [True, False], "loose": [True, True]},
            {"key": 2, "instruction_id_list": ["a"], "strict": [True], "loose": [True]}]
    metrics = score_verdicts(rows, n_boot=100)
    assert [metrics[name] for name in OFFICIAL] == [0.5, 2 / 3, 1.0, 1.0]
    assert metrics["per_type"]["a"] == {"n": 2, "strict": 1.0, "loose": 1.0}
    assert metrics["per_type"]["b"] == {"n": 1, "strict": 0.0, "loose": 1.0}
    assert all(low <= metrics[name] <= high for name, (low, high) in metrics["ci95"].items())


def test_cli_scores_a_responses_file_and_names_the_punkt_source(prompts, tmp_path):
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps({"key": k, "response": r}) + "\n" for k, r in hand_written(prompts).items()))
    out = tmp_path / "ifeval.json"
    result = CliRunner().invoke(app, ["eval", "--bench", "ifeval", "--responses", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["checker"]["punkt"].startswith(("official", "fallback")) and "punkt" in result.output
    assert metrics["n_prompts"] == 12 and "partial" in metrics["coverage"]
    assert (tmp_path / "ifeval.judgments.jsonl").read_text().count("\n") == 12
    again = CliRunner().invoke(app, ["eval", "--bench", "ifeval", "--responses", str(path), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize("row,message", [
    ('{"key": 99999, "response": "x"}', "field key: 99999 is not one of IFEval's 541 prompt keys"),
    ('{"key": "1000", "response": "x"}', "field key: expected IFEval's integer prompt key"),
    ('{"key": 1000, "response": 5}', "field response: expected text, got int"),
    ('not json', "row 1: not valid JSON"),
])
def test_a_bad_responses_row_is_one_line_and_exit_2(row, message, tmp_path):
    path = tmp_path / "responses.jsonl"
    path.write_text(row + "\n")
    result = CliRunner().invoke(app, ["eval", "--bench", "ifeval", "--responses", str(path), "--out", str(tmp_path / "o.json")])
    assert result.exit_code == 2 and message in result.output and not (tmp_path / "o.json").exists()


def test_ifeval_takes_responses_not_a_judge(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--bench", "ifeval", "--judge", "base", "--out", str(tmp_path / "o.json")])
    assert result.exit_code == 2 and "--responses" in result.output
